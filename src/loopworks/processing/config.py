"""The processing job's options, validated once with clear errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from loopworks.errors import ConfigurationError
from loopworks.processing.semantics import ColumnNames
from loopworks.processing.writers import OUTPUT_FORMATS

__all__ = ["ProcessingConfig", "parse_split"]

ENGINES = ("local", "ray")
STRATIFY = ("hash", "exact")
SHARD_BY = ("rows", "file")
#: The longest input any common encoder takes; padded rows longer than this would not fit
#: in memory (a 20,000-row shard at 8,192 tokens is already 1.3 GB of ids and masks).
MAX_SEQ_LENGTH = 8192


def parse_split(text: str) -> tuple[float, float, float]:
    """Parse ``"90,5,5"`` into train/validation/test percentages summing to 100."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise ConfigurationError(
            f"--split must be three numbers like 90,5,5; got {text!r}", setting="split"
        ) from None
    if len(values) != 3 or any(v < 0 for v in values) or abs(sum(values) - 100) > 1e-9:
        raise ConfigurationError(
            f"--split needs three non-negative percentages for train,validation,test that sum "
            f"to 100; got {text!r}",
            setting="split",
        )
    return values  # type: ignore[return-value]


@dataclass
class ProcessingConfig:
    """Everything a processing job needs to know.

    Attributes:
        inputs: File, folder or glob (local or fsspec URL), or several.
        out: Output folder (local path or fsspec URL).
        engine: ``local`` (process pool) or ``ray``.
        workers: Worker processes (local) or concurrent tasks (ray).
        ray_address: ``auto``, ``ray://host:port`` or empty to start a local Ray.
        tokenizer: Hub name, folder or tokenizer.json; empty for the offline default.
        max_seq_length: Length of input_ids/attention_mask.
        padding, truncation, special_tokens: Tokenizer options.
        balance: Downsample every class to the smallest (before tokenizing).
        split: Train/validation/test percentages.
        stratify: ``hash`` (stable per id) or ``exact`` (exact per-class proportions).
        seed: Seed for balancing and splitting.
        output_format: ``parquet``, ``jsonl`` or ``tfrecord``.
        columns: Input column names and passthrough columns.
        input_format: Force the input format instead of guessing from file names.
        lab_compat: Reproduce the course lab where it is deterministic.
        event_time: The run's event time (default: now); rows without a date get it.
        shard_by: ``rows`` (row ranges of size ``shard_rows``) or ``file`` (one per file).
        shard_rows: Rows per shard when sharding by rows.
        overwrite: Replace an output folder that was not written by loopworks.
        feature_group: Also ingest the features into this feature group (created with
            inferred definitions and the tokenizer as transformation metadata if missing).
    """

    inputs: str | list[str]
    out: str
    engine: str = "local"
    workers: int = 1
    ray_address: str = ""
    tokenizer: str = ""
    max_seq_length: int = 128
    padding: bool = True
    truncation: bool = True
    special_tokens: bool = True
    balance: bool = False
    split: tuple[float, float, float] = (90.0, 5.0, 5.0)
    stratify: str = "hash"
    seed: int = 0
    output_format: str = "parquet"
    columns: ColumnNames = field(default_factory=ColumnNames)
    input_format: str | None = None
    lab_compat: bool = False
    event_time: datetime | None = None
    shard_by: str = "rows"
    shard_rows: int = 20_000
    overwrite: bool = False
    feature_group: str | None = None

    def __post_init__(self) -> None:
        inputs = [self.inputs] if isinstance(self.inputs, str) else self.inputs
        if not inputs or not all(str(i).strip() for i in inputs):
            raise ConfigurationError("give an input: a file, folder, glob or URL",
                                     setting="inputs")
        if not self.out.strip():
            raise ConfigurationError("give an output folder (--out)", setting="out")
        if isinstance(self.split, str):
            self.split = parse_split(self.split)
        choices = (("engine", ENGINES), ("stratify", STRATIFY), ("output_format", OUTPUT_FORMATS),
                   ("shard_by", SHARD_BY))
        for name, allowed in choices:
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigurationError(
                    f"{name} must be one of {', '.join(allowed)}; got {value!r}",
                    setting=name, valid_values=list(allowed),
                )
        if self.input_format not in (None, "csv", "jsonl", "parquet"):
            raise ConfigurationError(
                f"input format must be csv, jsonl or parquet; got {self.input_format!r}",
                setting="input_format",
            )
        for name in ("workers", "max_seq_length", "shard_rows"):
            if int(getattr(self, name)) < 1:
                raise ConfigurationError(f"{name} must be at least 1", setting=name)
        if self.max_seq_length > MAX_SEQ_LENGTH:
            raise ConfigurationError(
                f"max_seq_length must be at most {MAX_SEQ_LENGTH} (padded rows longer than the "
                f"longest encoder input do not fit in memory); got {self.max_seq_length}",
                setting="max_seq_length",
            )
        if self.feature_group is not None:
            from loopworks.featurestore.registry import validate_name

            validate_name(self.feature_group)  # now, not after the whole job has run
        if self.truncation is False and self.padding and self.output_format == "tfrecord":
            raise ConfigurationError("TFRecord output needs truncation", setting="truncation")
        if self.lab_compat:
            self.stratify = "exact"
        if self.event_time is None:
            self.event_time = datetime.now(UTC).replace(microsecond=0)
        elif self.event_time.tzinfo is None:
            self.event_time = self.event_time.replace(tzinfo=UTC)

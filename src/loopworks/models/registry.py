"""Saved models by name and version under ``$LOOPWORKS_HOME/models/<name>/<version>/``.

Each version folder holds ``model.joblib`` (the fitted model), ``model.json`` (its card:
classes, features, training data and hash, metrics, versions of the libraries) and,
when trained by :func:`~loopworks.models.training.train_model`, ``report.json`` and
``reliability.png``. A version is written into a temporary folder and renamed into place
under a lock, so readers never see half a model and two writers never share a number.

Loading unpickles ``model.joblib``: **it runs code from the file**, so load only models you
(or someone you trust) saved. The card records the file's SHA-256 and loading checks it,
which catches corruption, not tampering.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loopworks.errors import ConfigurationError, InputError, NotFoundError

__all__ = ["ModelCard", "ModelRegistry", "list_models", "load_model", "save_model"]

MODEL_FILE = "model.joblib"
CARD_FILE = "model.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass
class ModelCard:
    """What a saved model is, what it was trained on and how well it does.

    Attributes:
        name: Model name.
        version: Version number (1, 2, ...), given on save.
        classes: Class names; label id ``i`` is ``classes[i]``.
        features: How texts become features (kind, n-grams, vocabulary sizes, classifier).
        calibration: Method and fitted parameters (e.g. the temperature).
        training_data: Source, text and label columns, rows per split and per class, rows
            skipped by reason, and the SHA-256 of the (split, text, label) content.
        metrics: Test-split numbers (accuracy, macro F1, ECE before and after calibration).
        created: ISO-8601 UTC time of saving.
        sklearn_version: scikit-learn version it was fitted with.
        python_version: Python version it was saved with.
        loopworks_version: loopworks version it was saved with.
        files: File names in the version folder and the SHA-256 of the model file.
        path: The version folder (not stored in the card file).
    """

    name: str
    version: int = 0
    classes: list[str] = field(default_factory=list)
    features: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    training_data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    sklearn_version: str = ""
    python_version: str = ""
    loopworks_version: str = ""
    files: dict[str, str] = field(default_factory=dict)
    path: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """The card as stored in ``model.json``."""
        data = asdict(self)
        data.pop("path")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path | None = None) -> ModelCard:
        """Rebuild a card from ``model.json`` (unknown keys are ignored)."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "path"}
        return cls(**known, path=path)


def validate_model_name(name: str) -> str:
    """Check a model name: letters, digits, ``.``, ``_``, ``-``; at most 100 characters.

    Raises:
        ConfigurationError: The name is not allowed.
    """
    if not isinstance(name, str) or not _NAME.match(name) or name in (".", ".."):
        raise ConfigurationError(
            f"invalid model name {name!r}: use letters, digits, '.', '_' and '-' (starting "
            "with a letter or digit), at most 100 characters", name=name)
    return name


def parse_model_ref(ref: str) -> tuple[str, int | None]:
    """Split ``name`` or ``name:version`` into the name and the version (None: latest).

    Raises:
        ConfigurationError: A bad name or a version that is not a positive whole number.
    """
    name, _, version = ref.partition(":")
    validate_model_name(name)
    if not version:
        return name, None
    if not version.isdigit() or int(version) < 1:
        raise ConfigurationError(f"invalid model version {version!r} in {ref!r}; use "
                                 "NAME or NAME:VERSION (1, 2, ...)", name=name)
    return name, int(version)


class ModelRegistry:
    """Models saved under a loopworks home folder.

    Args:
        home: The loopworks home (default: ``LOOPWORKS_HOME`` or ``~/.loopworks``).
    """

    def __init__(self, home: str | os.PathLike[str] | None = None) -> None:
        from loopworks.settings import load_settings

        self.root = load_settings(home=str(home) if home else None).home / "models"

    def versions(self, name: str) -> list[int]:
        """Saved versions of a model, ascending (empty when there are none)."""
        folder = self.root / validate_model_name(name)
        if not folder.is_dir():
            return []
        return sorted(int(p.name) for p in folder.iterdir()
                      if p.name.isdigit() and (p / CARD_FILE).is_file())

    def names(self) -> list[str]:
        """Names of the saved models, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and _NAME.match(p.name) and self.versions(p.name))

    def card(self, name: str, version: int | None = None) -> ModelCard:
        """The card of a model version (default: the latest).

        Raises:
            NotFoundError: No such model or version; lists what exists.
        """
        folder = self._folder(name, version)
        try:
            data = json.loads((folder / CARD_FILE).read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"{folder / CARD_FILE}: unreadable model card: {exc}",
                             file=str(folder / CARD_FILE)) from None
        return ModelCard.from_dict(data, path=folder)

    def list(self, all_versions: bool = False) -> list[ModelCard]:
        """Cards of the latest version of each model (or of every version)."""
        cards: list[ModelCard] = []
        for name in self.names():
            versions = self.versions(name) if all_versions else self.versions(name)[-1:]
            cards.extend(self.card(name, v) for v in versions)
        return cards

    def save(self, model: Any, name: str, card: ModelCard | None = None,
             extra_files: Callable[[Path], None] | None = None) -> ModelCard:
        """Save a model as the next version of ``name``.

        Args:
            model: The fitted model (anything joblib can pickle).
            name: Model name.
            card: Card to store (name, version, created, versions and file hash are filled).
            extra_files: Called with the temporary version folder to add files (report,
                PNG) before it is renamed into place.

        Returns:
            The stored card, with ``version`` and ``path`` set.
        """
        import joblib
        import sklearn
        from filelock import FileLock

        from loopworks import __version__

        validate_model_name(name)
        card = card or ModelCard(name=name)
        card.name = name
        card.created = datetime.now(UTC).isoformat(timespec="seconds")
        card.sklearn_version = sklearn.__version__
        card.python_version = sys.version.split()[0]
        card.loopworks_version = __version__
        if not card.classes and hasattr(model, "classes"):
            card.classes = [str(c) for c in model.classes]
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder))
        try:
            joblib.dump(model, tmp / MODEL_FILE, compress=3)
            card.files = {"model": MODEL_FILE, "card": CARD_FILE,
                          "model_sha256": _sha256(tmp / MODEL_FILE)}
            if extra_files is not None:
                extra_files(tmp)
                for extra in sorted(p.name for p in tmp.iterdir()):
                    if extra not in (MODEL_FILE, CARD_FILE):
                        card.files.setdefault(Path(extra).stem, extra)
            with FileLock(str(folder / ".lock"), timeout=60):
                existing = self.versions(name)
                card.version = (existing[-1] if existing else 0) + 1
                (tmp / CARD_FILE).write_text(json.dumps(card.to_dict(), indent=2) + "\n",
                                             "utf-8")
                target = folder / str(card.version)
                os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        card.path = target
        return card

    def load(self, name: str, version: int | None = None) -> Any:
        """Load a saved model (default: the latest version) with its card as ``.card``.

        Unpickling runs code from the file: load only models you trust.

        Raises:
            NotFoundError: No such model or version.
            InputError: The model file is missing or does not match its recorded hash.
        """
        import joblib

        card = self.card(name, version)
        assert card.path is not None
        path = card.path / card.files.get("model", MODEL_FILE)
        if not path.is_file():
            raise InputError(f"{path}: model file missing", file=str(path))
        expected = card.files.get("model_sha256")
        if expected and _sha256(path) != expected:
            raise InputError(f"{path}: the file does not match the SHA-256 in its card "
                             f"(corrupted or replaced); retrain or restore it", file=str(path))
        model = joblib.load(path)
        try:
            model.card = card
        except AttributeError:  # pragma: no cover - objects that refuse attributes
            pass
        return model

    def _folder(self, name: str, version: int | None) -> Path:
        versions = self.versions(name)
        if not versions:
            known = ", ".join(self.names()) or "none yet"
            raise NotFoundError(f"no model named {name!r} under {self.root} (models: {known}); "
                                f"train one with `loopworks model train {name} --input ...`",
                                model=name)
        if version is None:
            version = versions[-1]
        if version not in versions:
            raise NotFoundError(f"model {name!r} has no version {version} (versions: "
                                f"{', '.join(map(str, versions))})", model=name,
                                version=version)
        return self.root / name / str(version)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_model(model: Any, name: str, card: ModelCard | None = None, *,
               home: str | os.PathLike[str] | None = None) -> ModelCard:
    """Save a model as the next version of ``name`` (see :meth:`ModelRegistry.save`)."""
    return ModelRegistry(home).save(model, name, card)


def load_model(name: str, version: int | None = None, *,
               home: str | os.PathLike[str] | None = None) -> Any:
    """Load model ``name`` (``version`` or the latest); ``name:3`` also picks version 3.

    Unpickling runs code from the file: load only models you trust.

    Raises:
        NotFoundError: No such model or version.
    """
    ref_name, ref_version = parse_model_ref(name)
    return ModelRegistry(home).load(ref_name, version if version is not None else ref_version)


def list_models(*, all_versions: bool = False,
                home: str | os.PathLike[str] | None = None) -> list[ModelCard]:
    """Cards of the saved models (latest version of each, or every version)."""
    return ModelRegistry(home).list(all_versions=all_versions)

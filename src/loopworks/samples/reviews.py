"""Synthetic product reviews for a made-up clothing shop.

Every word here was written for loopworks: the catalog, the phrase templates and the
titles are invented, no review text is copied from anywhere. Templates use ``{a|b|c}``
alternatives and are expanded once into fragment pools; a review is a random string of
fragments whose tone fits its star rating. All random draws are numpy vector draws and the
joining is done by Arrow compute kernels, so millions of rows take seconds.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loopworks.errors import ConfigurationError
from loopworks.samples.phrases import CATALOG, CLASS_WEIGHTS, LINES, PHRASES

__all__ = ["BROKEN_KINDS", "broken_counts", "generate_reviews", "output_format", "write_reviews"]

COLUMNS = ("review_id", "product_id", "product_name", "division_name", "department_name",
           "class_name", "star_rating", "review_title", "review_body", "review_date")
BROKEN_KINDS = ("empty_text", "rating_out_of_range", "missing_rating")
_EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
_FORMATS = ("csv", "jsonl", "parquet")

_STAR_P = np.array([0.04, 0.07, 0.12, 0.22, 0.55])
_FIRST_DAY = int(np.datetime64("2019-01-01", "D").astype(np.int64))
_LAST_DAY = int(np.datetime64("2024-12-31", "D").astype(np.int64))
_TITLE_NULL_P = 0.15
_SHORT_P = 0.07
_NEWLINE_P = 0.02
_OPENER_P = 0.45
_CLOSER_P = 0.35
# Content sentences per (non-short) review: 1..16. The tail (>= 9) makes ~4% long reviews.
_SENTENCES_P = np.array([0.06, 0.15, 0.179, 0.18, 0.13, 0.09, 0.06, 0.045,
                         0.03, 0.027, 0.02, 0.01, 0.007, 0.005, 0.004, 0.003])
# Chance a content sentence comes from the [positive, mixed, negative, neutral] pool.
_TONE_P = np.array([[0.00, 0.00, 0.85, 0.15],   # 1 star
                    [0.00, 0.15, 0.70, 0.15],   # 2 stars
                    [0.15, 0.50, 0.20, 0.15],   # 3 stars
                    [0.70, 0.15, 0.00, 0.15],   # 4 stars
                    [0.85, 0.00, 0.00, 0.15]])  # 5 stars
# Tone of a sentence as a lookup (star - 1, uniform draw in thousandths) -> tone.
_TONE_LUT = np.stack([np.searchsorted(np.cumsum(p), (np.arange(1000) + 0.5) / 1000, "right")
                      for p in _TONE_P]).clip(max=3)
_BAND = np.array([2, 2, 1, 0, 0])  # star - 1 -> 0 positive, 1 mixed, 2 negative
_CHUNK = 250_000  # review bodies are built this many rows at a time

# class: (department, item nouns, materials). Division: Intimate -> Intimates, else General*.
def _expand(template: str) -> list[str]:
    """Expand ``{a|b}`` alternatives into every concrete string."""
    parts = re.split(r"\{([^{}]*)\}", template)
    choices = [[p] if i % 2 == 0 else p.split("|") for i, p in enumerate(parts)]
    return ["".join(c) for c in itertools.product(*choices)]


@dataclass(frozen=True)
class _Vocab:
    """The expanded phrase book: fragments grouped by template, templates by pool."""

    strings: pa.Array  # every expanded fragment
    tpl_start: np.ndarray  # first fragment of each template
    tpl_count: np.ndarray  # fragments per template
    pool_start: np.ndarray  # first template of each pool
    pool_count: np.ndarray  # templates per pool
    pool: dict[str, int]

    def draw(self, rng: np.random.Generator, pools: np.ndarray) -> np.ndarray:
        """One fragment id per entry of ``pools``: a template uniformly, then a variant."""
        t = self.pool_start[pools] + (rng.random(pools.size) * self.pool_count[pools]).astype(
            np.int64)
        return self.tpl_start[t] + (rng.random(pools.size) * self.tpl_count[t]).astype(np.int64)


@functools.cache
def _vocab() -> _Vocab:
    strings: list[str] = []
    names: list[str] = []
    tpl_start: list[int] = []
    tpl_count: list[int] = []
    pool_start: list[int] = []
    pool_count: list[int] = []
    for section in re.split(r"^\[", PHRASES.strip(), flags=re.M)[1:]:
        name, text = section.split("]", 1)
        templates = [t.strip() for t in text.replace("\n", " ").split(" ~ ")]
        names.append(name)
        pool_start.append(len(tpl_start))
        pool_count.append(len(templates))
        for template in templates:
            variants = _expand(template)
            tpl_start.append(len(strings))
            tpl_count.append(len(variants))
            strings.extend(variants)
    return _Vocab(pa.array(strings, pa.string()), np.array(tpl_start), np.array(tpl_count),
                  np.array(pool_start), np.array(pool_count), {k: i for i, k in enumerate(names)})


def _catalog(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    classes = list(CATALOG)
    weights = np.array(CLASS_WEIGHTS, dtype=float)
    cls = rng.choice(len(classes), size=n, p=weights / weights.sum())
    petite = rng.random(n) < 0.35
    line = rng.integers(len(LINES), size=n)
    pick_noun, pick_mat, use_mat = rng.random(n), rng.random(n), rng.random(n) < 0.7
    names, nouns, divisions, departments = [], [], [], []
    for i in range(n):
        department, item_nouns, materials = CATALOG[classes[cls[i]]]
        noun = item_nouns[int(pick_noun[i] * len(item_nouns))]
        material = materials[int(pick_mat[i] * len(materials))] + " " if use_mat[i] else ""
        names.append(f"{LINES[line[i]]} {material}{noun}")
        nouns.append(noun.lower())
        departments.append(department)
        divisions.append("Intimates" if department == "Intimate"
                         else "General Petite" if petite[i] else "General")
    return {"product_id": 1001 + np.arange(n, dtype=np.int64), "product_name": np.array(names),
            "division_name": np.array(divisions), "department_name": np.array(departments),
            "class_name": np.array([classes[c] for c in cls]), "noun": np.array(nouns)}


def _pick(vocab: _Vocab, rng: np.random.Generator, base: str, band: np.ndarray) -> pa.Array:
    """One fragment per row from ``base + _pos/_mix/_neg`` chosen by each row's tone band."""
    first = vocab.pool[f"{base}_pos"]  # the three pools are consecutive: pos, mix, neg
    return vocab.strings.take(vocab.draw(rng, first + band))


def _bodies(vocab: _Vocab, rng: np.random.Generator, stars: np.ndarray, nouns: pa.Array,
            empty: np.ndarray) -> pa.Array:
    """Review bodies for one chunk; ``empty`` >= 0 marks rows to blank ("", "   ", null)."""
    rows = stars.size
    band = _BAND[stars - 1]
    k = rng.choice(np.arange(1, _SENTENCES_P.size + 1), size=rows, p=_SENTENCES_P)
    slot_stars = np.repeat(stars - 1, k)
    tone = _TONE_LUT[slot_stars, (rng.random(slot_stars.size) * 1000).astype(np.int64)]
    pools = np.array([vocab.pool[p] for p in ("pos", "mix", "neg", "neutral")])[tone]
    offsets = np.zeros(rows + 1, dtype=np.int32)
    np.cumsum(k, out=offsets[1:])
    fragments = vocab.strings.take(vocab.draw(rng, pools))
    content = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), fragments), " ")

    def single(name: str) -> pa.Array:
        return vocab.strings.take(vocab.draw(rng, np.full(rows, vocab.pool[name])))

    opener = pc.binary_join_element_wise(single("open_pre"), nouns, "in", single("open_end"), " ")
    opener = pc.if_else(pa.array(rng.random(rows) < _OPENER_P), opener, None)
    closer = pc.if_else(pa.array(rng.random(rows) < _CLOSER_P),
                        _pick(vocab, rng, "close", band), None)
    body = pc.binary_join_element_wise(opener, content, closer, " ", null_handling="skip")
    body = pc.if_else(pa.array(rng.random(rows) < _SHORT_P), _pick(vocab, rng, "short", band),
                      body)
    newline = pc.replace_substring(body, ". ", ".\n", max_replacements=1)
    body = pc.if_else(pa.array(rng.random(rows) < _NEWLINE_P), newline, body)
    blank = empty >= 0
    if not blank.any():
        return body
    replacements = pa.array(["", "   ", None], pa.string()).take(pa.array(empty[blank]))
    return pc.replace_with_mask(body, pa.array(blank), replacements)


def _broken_plan(rng: np.random.Generator, rows: int) -> dict[str, np.ndarray]:
    """Row positions to break, per kind (none below 50 rows)."""
    if rows < 50:
        return {kind: np.empty(0, dtype=np.int64) for kind in BROKEN_KINDS}
    total = round(rows * 0.005)
    empty = max(round(total * 0.4), 3)
    out_of_range = max(round(total * 0.3), 1)
    missing = max(total - empty - out_of_range, 1)
    chosen = rng.choice(rows, size=empty + out_of_range + missing, replace=False)
    cuts = np.cumsum([empty, out_of_range])
    return dict(zip(BROKEN_KINDS, np.split(chosen, cuts), strict=True))


def generate_reviews(rows: int, seed: int = 0, broken: bool = True) -> pa.Table:
    """Generate a table of synthetic clothing-shop reviews.

    Args:
        rows: Number of reviews (0 or more).
        seed: Random seed; the same seed always gives the same table.
        broken: Add about 0.5% deliberately broken rows (empty, whitespace-only or null
            ``review_body``; ``star_rating`` out of range: 0, 6, 9 or -1; null
            ``star_rating``), at least one of each kind from 50 rows on. Turning it off
            leaves every other row unchanged.

    Returns:
        A table with the columns ``review_id``, ``product_id``, ``product_name``,
        ``division_name``, ``department_name``, ``class_name``, ``star_rating``,
        ``review_title``, ``review_body`` and ``review_date`` (date32).

    Raises:
        ConfigurationError: If ``rows`` is negative.
    """
    if rows < 0:
        raise ConfigurationError(f"rows must be 0 or more, got {rows}", setting="rows",
                                 value=rows)
    r_cat, r_prod, r_star, r_text, r_title, r_date, r_broken = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(7))
    vocab = _vocab()
    catalog = _catalog(r_cat, int(min(max(rows // 40, 20), 1500)))
    n_products = catalog["product_id"].size
    popularity = 1.0 / np.arange(1, n_products + 1) ** 0.8
    product = r_prod.permutation(n_products)[
        r_prod.choice(n_products, size=rows, p=popularity / popularity.sum())]
    stars = r_star.choice(np.arange(1, 6), size=rows, p=_STAR_P)

    plan = _broken_plan(r_broken, rows if broken else 0)
    empty = np.full(rows, -1, dtype=np.int64)  # blank kind per row: 0 "", 1 "   ", 2 null
    empty[plan["empty_text"]] = np.arange(plan["empty_text"].size) % 3
    nouns = pa.array(catalog["noun"])
    body = pa.chunked_array([
        _bodies(vocab, r_text, stars[lo:lo + _CHUNK], nouns.take(product[lo:lo + _CHUNK]),
                empty[lo:lo + _CHUNK]) for lo in range(0, rows, _CHUNK)], pa.string())
    title = _pick(vocab, r_title, "title", _BAND[stars - 1])
    title = pc.if_else(pa.array(r_title.random(rows) < _TITLE_NULL_P), None, title)
    days = r_date.integers(_FIRST_DAY, _LAST_DAY + 1, size=rows).astype(np.int32)

    rating_null = np.zeros(rows, dtype=bool)
    if broken:
        oor = plan["rating_out_of_range"]
        stars = stars.copy()
        stars[oor] = np.resize(np.array([0, 6, 9, -1]), oor.size)
        rating_null[plan["missing_rating"]] = True

    width = len(str(rows))
    ids = pc.utf8_lpad(pa.array(np.arange(1, rows + 1)).cast(pa.string()), width, "0")
    columns = [pc.binary_join_element_wise("r", ids, "")]
    columns += [pa.array(catalog[name]).take(product) for name in COLUMNS[1:6]]
    columns += [pa.array(stars.astype(np.int64), mask=rating_null), title, body,
                pa.array(days).cast(pa.date32())]
    schema = pa.schema([(name, col.type) for name, col in zip(COLUMNS, columns, strict=True)])
    return pa.Table.from_arrays(columns, schema=schema)


def broken_counts(table: pa.Table) -> dict[str, int]:
    """Count the rows of each broken kind in a reviews table.

    Args:
        table: A table with ``review_body`` and ``star_rating`` columns.

    Returns:
        Counts keyed by :data:`BROKEN_KINDS`: empty (null or blank) text, rating outside
        1..5, missing rating.
    """
    body = table["review_body"]
    empty = pc.or_kleene(pc.is_null(body), pc.equal(pc.utf8_trim_whitespace(body), ""))
    rating = table["star_rating"]
    out_of_range = pc.or_(pc.less(rating, 1), pc.greater(rating, 5))
    return {"empty_text": pc.sum(empty).as_py() or 0,
            "rating_out_of_range": pc.sum(out_of_range).as_py() or 0,
            "missing_rating": rating.null_count}


def output_format(out: str | os.PathLike[str], format: str | None = None) -> str:
    """Resolve the output format (``csv``, ``jsonl`` or ``parquet``) of ``out``.

    Args:
        out: Output file; its extension decides the format when ``format`` is None.
        format: Explicit format; ``json`` means JSON Lines.

    Raises:
        ConfigurationError: If the format or the extension is not known.
    """
    if format is not None:
        fmt = {"json": "jsonl"}.get(format.lower(), format.lower())
        if fmt not in _FORMATS:
            raise ConfigurationError(f"unknown output format {format!r}; use one of "
                                     f"{', '.join(_FORMATS)}", setting="format", value=format,
                                     allowed=list(_FORMATS))
        return fmt
    suffix = Path(out).suffix.lower()
    if suffix not in _EXTENSIONS:
        allowed = ", ".join(_EXTENSIONS)
        raise ConfigurationError(f"cannot tell the output format of {os.fspath(out)!r} from its "
                                 f"extension {suffix or '(none)'!r}; use one of {allowed}",
                                 setting="out", value=os.fspath(out), allowed=list(_EXTENSIONS))
    return _EXTENSIONS[suffix]


def write_reviews(table: pa.Table, out: str | os.PathLike[str],
                  format: str | None = None) -> Path:
    """Write a reviews table to CSV, JSON Lines or Parquet, atomically.

    The data goes to a temporary file in the target folder, which is then renamed over
    ``out``, so readers never see a half-written file. Parent folders are created.

    Args:
        table: The table to write, usually from :func:`generate_reviews`.
        out: Output file; ``.csv``, ``.jsonl``/``.json`` or ``.parquet``.
        format: ``csv``, ``jsonl`` or ``parquet`` to override the extension.

    Returns:
        The path written.

    Raises:
        ConfigurationError: If the format cannot be told or is not supported.
    """
    from loopworks.files import write_table

    return Path(write_table(table, out, format=output_format(out, format)))

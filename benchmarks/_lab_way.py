"""The course lab's way of preparing reviews: pandas, one tokenizer call per review.

A helper of ``benchmarks/processing.py``, which runs it as a subprocess:

* variant (b): in a transformers 4.x virtual environment, ``--kind slow``: the pure-Python
  ``RobertaTokenizer.encode_plus`` called by ``df.apply`` once per review, as the lab did;
* variant (b'): in the main environment, ``--kind fast``: the same loop with today's fast
  tokenizer, ``tokenizer(text, ...)``.

It reads the CSV with pandas, derives sentiment and label ids, tokenizes, splits 90/5/5 and
writes one Parquet file per split, then prints one JSON line: rows, seconds and the time of
each step. Seconds count from loading the tokenizer to the last file written (imports are
not counted). It imports nothing from loopworks: the 4.x environment does not have it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

MAX_LENGTH = 128
SPLITS = (("train", 0.90), ("validation", 0.05), ("test", 0.05))


def to_sentiment(star_rating: float) -> int:
    """The lab's mapping: 1-2 stars -> -1, 3 -> 0, 4-5 -> 1."""
    if star_rating in {1, 2}:
        return -1
    if star_rating == 3:
        return 0
    return 1


def load_tokenizer(folder: str, kind: str):
    """RobertaTokenizer (slow, transformers 4.x) or RobertaTokenizerFast from the folder."""
    import transformers

    if kind == "slow":
        tokenizer = transformers.RobertaTokenizer.from_pretrained(folder)
        if tokenizer.is_fast:
            raise SystemExit(f"transformers {transformers.__version__} has no slow "
                             "RobertaTokenizer; variant (b) needs transformers 4.x")
    else:
        tokenizer = transformers.RobertaTokenizerFast.from_pretrained(folder)
    return tokenizer


def make_encoder(tokenizer, kind: str):
    """One call per review: encode_plus (the lab's code) or the fast tokenizer's __call__."""
    if kind == "slow":
        def encode(text: str):
            return tokenizer.encode_plus(
                text, max_length=MAX_LENGTH, add_special_tokens=True, padding="max_length",
                truncation=True, return_attention_mask=True)
    else:
        def encode(text: str):
            return tokenizer(text, max_length=MAX_LENGTH, padding="max_length", truncation=True)
    return encode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--tokenizer", required=True, help="folder with vocab.json + merges.txt")
    parser.add_argument("--kind", choices=("slow", "fast"), required=True)
    parser.add_argument("--rows", type=int, default=0, help="read only the first N rows (0: all)")
    args = parser.parse_args()

    import numpy as np
    import pandas as pd
    import tokenizers
    import transformers

    steps: dict[str, float] = {}
    start = clock = time.perf_counter()

    def step(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        steps[name] = round(now - clock, 4)
        clock = now

    tokenizer = load_tokenizer(args.tokenizer, args.kind)
    encode = make_encoder(tokenizer, args.kind)
    step("load_tokenizer")

    df = pd.read_csv(args.csv, nrows=args.rows or None)
    rows_in = len(df)
    step("read_csv")

    df = df.dropna(subset=["review_body", "star_rating"])
    df = df[(df["review_body"].str.strip() != "") & df["star_rating"].between(1, 5)].copy()
    df["sentiment"] = df["star_rating"].apply(to_sentiment)
    df["label_id"] = df["sentiment"].apply(lambda sentiment: sentiment + 1)
    step("derive")

    encoded = df["review_body"].apply(encode)
    df["input_ids"] = [e["input_ids"] for e in encoded]
    df["attention_mask"] = [e["attention_mask"] for e in encoded]
    step("tokenize")

    order = np.random.default_rng(0).permutation(len(df))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    columns = ["review_id", "review_date", "sentiment", "label_id", "input_ids",
               "attention_mask", "review_body"]
    begin = 0
    for index, (name, share) in enumerate(SPLITS):
        end = len(df) if index == len(SPLITS) - 1 else begin + int(round(share * len(df)))
        part = df.iloc[np.sort(order[begin:end])][columns].assign(split_type=name)
        part.to_parquet(out / f"{name}.parquet", index=False)
        begin = end
    step("split_write")

    print(json.dumps({
        "rows": rows_in,
        "rows_out": len(df),
        "seconds": round(time.perf_counter() - start, 4),
        "steps": steps,
        "tokenizer_class": type(tokenizer).__name__,
        "is_fast": bool(tokenizer.is_fast),
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "pandas": pd.__version__,
    }))


if __name__ == "__main__":
    main()

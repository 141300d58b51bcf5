"""A process for the crash tests to kill: writes to a feature group through the SDK.

``python _crash_child.py GROUP STEPS_JSON``, with the home and stores taken from the
environment (``LOOPWORKS_HOME``, ``LOOPWORKS_ONLINE_STORE_URL``, ``LOOPWORKS_DATABASE_URL``).
Each step is one of:

* ``{"do": "ingest", "ids": [first, end], "version": v, "batch_rows": n, "ttl": s}``
* ``{"do": "delete", "ids": [...], "version": v, "hard": bool}`` (one delete per id)
* ``{"do": "put", "ids": [...], "version": v}`` (one put_record per id)
* ``{"do": "open"}``: open the group, which finishes interrupted writes

Records of version ``v`` have event times on day ``v`` (a later version is newer); a delete
of version ``v`` is newer than every record of that version and older than the next's.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def records(first: int, end: int, version: int) -> pa.Table:
    """Reviews ``r<first>`` .. ``r<end - 1>`` as written in ``version``."""
    ids = np.arange(first, end)
    rng = np.random.default_rng(first * 1000 + version)
    tokens = rng.integers(0, 30000, (len(ids), 128), dtype=np.int32)
    return pa.table({
        "review_id": pa.array([f"r{i}" for i in ids]),
        "date": pa.array([event_time(version, int(i)) for i in ids],
                         pa.timestamp("us", tz="UTC")),
        "sentiment": pa.array(rng.integers(-1, 2, len(ids)), pa.int8()),
        "input_ids": pa.FixedSizeListArray.from_arrays(pa.array(tokens.ravel()), 128),
        "review_body": pa.array([f"review {i}, version {version}" for i in ids]),
    })


def event_time(version: int, index: int) -> datetime:
    return T0 + timedelta(days=version, seconds=index % 80_000)


def delete_time(version: int) -> datetime:
    return T0 + timedelta(days=version, seconds=80_000)


def main(group_name: str, steps: list[dict]) -> None:
    from loopworks.featurestore import FeatureStore

    with FeatureStore() as store:
        group = store.feature_group(group_name)
        for step in steps:
            if step["do"] == "ingest":
                group.ingest(records(*step["ids"], step["version"]),
                             batch_rows=step.get("batch_rows", 50_000),
                             ttl_seconds=step.get("ttl"))
            elif step["do"] == "delete":
                for record_id in step["ids"]:
                    group.delete_record(record_id, delete_time(step["version"]),
                                        hard=step.get("hard", False))
            elif step["do"] == "put":
                for row in records(*step["ids"], step["version"]).to_pylist():
                    group.put_record(row)
            elif step["do"] == "open":
                store.feature_group(group_name)
            else:
                raise ValueError(f"unknown step {step!r}")


if __name__ == "__main__":
    main(sys.argv[1], json.loads(sys.argv[2]))

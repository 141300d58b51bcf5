"""The offline store on a real S3 server that is not ours: moto's standalone server.

The feature store keeps its Delta tables under ``s3://BUCKET/PREFIX`` with the endpoint and
keys from the usual AWS environment. Everything a user does with the history (ingest,
put_record, time travel, SQL, point-in-time joins) must give what the same calls give on
local disk, and writers on two machines must never lose each other's commits.
"""

from __future__ import annotations

import http.client
import http.server
import json
import multiprocessing
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from loopworks.errors import ConfigurationError
from loopworks.featurestore import FeatureStore
from loopworks.featurestore.definitions import EVENT_TIME_TYPE
from loopworks.featurestore.offline import DeltaOfflineStore

from _moto import REGION, TEST_KEYS, create_bucket, moto_server, moto_variables

boto3 = pytest.importorskip("boto3", reason="boto3 is not installed (the dev extra has it)")
pytest.importorskip("moto.server",
                    reason="moto's server is not installed (the dev extra has moto[server])")

T0 = datetime(2024, 3, 1, tzinfo=UTC)
#: Variables that make the store refuse to write (a developer's shell may have them).
UNSAFE_VARIABLES = ("AWS_CONDITIONAL_PUT", "AWS_S3_ALLOW_UNSAFE_RENAME", "AWS_S3_LOCKING_PROVIDER")
FEATURES = ["review_id", "event_time", "sentiment", "score", "input_ids", "split_type"]


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def machine() -> Iterator[Any]:
    """Another machine's process (spawned once): it writes through :class:`RaceProxy`.

    In another process because delta-rs holds the GIL through some of its network calls
    (``history``), which would stall a proxy in the same process.
    """
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        yield pool
        pool.close()
        pool.join()


@pytest.fixture
def bucket(moto: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket; the AWS environment points at moto (the conftest restores it)."""
    for name, value in moto_variables(moto).items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_PROFILE", *UNSAFE_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    name = f"lake-{uuid.uuid4().hex[:12]}"
    create_bucket(moto, name)
    return name


def keys(moto: str, bucket: str, prefix: str = "") -> list[str]:
    client = boto3.client("s3", endpoint_url=moto)
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]
    finally:
        client.close()


def reviews(ids: range, *, day: float = 0, sentiment: int = 1) -> pd.DataFrame:
    return pd.DataFrame({
        "review_id": [f"r{i}" for i in ids],
        "event_time": [T0 + timedelta(days=day, hours=i % 48) for i in ids],
        "sentiment": [(i + sentiment) % 3 - 1 for i in ids],
        "score": [i / 8 for i in ids],
        "input_ids": [[i % 50_000] * 4 for i in ids],
        "split_type": ["train" if i % 10 else "test" for i in ids],
    })


def features_only(table: pa.Table) -> pa.Table:
    """The rows without write_time (it differs between two stores), in a stable order."""
    return table.select([*FEATURES, "is_deleted"]).sort_by(
        [("review_id", "ascending"), ("event_time", "ascending"), ("sentiment", "ascending")])


# ------------------------------------------------------------------ the whole store
def exercise(store: FeatureStore) -> dict[str, Any]:
    """The same calls on any store; returns what a user would look at."""
    group = store.create_feature_group("reviews", record_id="review_id",
                                       event_time="event_time", df=reviews(range(1)))
    report = group.ingest(reviews(range(300)), batch_rows=100)  # versions 0, 1, 2
    group.ingest(reviews(range(0, 300, 3), day=2, sentiment=2))  # 3: later events for 100 ids
    assert group.put_record({"review_id": "r7", "event_time": T0 + timedelta(days=5),
                             "sentiment": -1, "score": 0.5, "input_ids": [1, 2, 3, 4],
                             "split_type": "test"})  # 4
    group.delete_record("r8", T0 + timedelta(days=6))  # 5: a tombstone
    offline = store.offline
    first = offline.read("reviews", version=0)
    as_of = pc.max(offline.read("reviews", version=2).column("write_time")).as_py()
    entity = pd.DataFrame({"review_id": [f"r{i}" for i in range(0, 320, 2)] * 2,
                           "event_time": [T0 + timedelta(days=d, hours=i) for d in (1, 8)
                                          for i in range(160)]})
    entity["label"] = range(len(entity))
    return {
        "report_version": report.offline_version,
        "version": offline.version("reviews"),
        "operations": [c["operation"] for c in offline.history("reviews")],
        "history": features_only(offline.read("reviews")),
        "version_0": features_only(first),
        "as_of": features_only(offline.read("reviews", as_of=as_of)),
        "version_2": features_only(offline.read("reviews", version=2)),
        "online": [group.get_record(r) for r in ("r7", "r8", "r9", "r299", "nope")],
        "sql": store.query("SELECT split_type, sentiment, count(*) AS n, sum(score) AS s "
                           "FROM reviews_latest GROUP BY ALL ORDER BY ALL"),
        "sql_as_of": store.query("SELECT count(*) AS n, count(DISTINCT review_id) AS ids "
                                 "FROM reviews", as_of=as_of),
        "dataset": store.dataset("reviews", output="arrow").sort_by("review_id"),
        "training_set": store.training_set(entity, ["reviews:sentiment", "reviews:score",
                                                    "reviews:input_ids"]),
    }


def test_every_read_on_s3_equals_the_same_on_local_disk(moto: str, bucket: str,
                                                         tmp_path: Path) -> None:
    with FeatureStore(tmp_path / "s3-home", offline_store_url=f"s3://{bucket}/lake") as s3, \
            FeatureStore(tmp_path / "disk-home") as disk:
        on_s3, on_disk = exercise(s3), exercise(disk)
        assert s3.offline.uri("reviews") == f"s3://{bucket}/lake/reviews"

    # What a user relies on, on S3 itself...
    assert on_s3["report_version"] == 2 and on_s3["version"] == 5
    assert on_s3["operations"] == ["WRITE"] * 6
    assert on_s3["history"].num_rows == 300 + 100 + 1 + 1
    assert on_s3["version_0"].num_rows == 100
    assert on_s3["version_0"].column("review_id").to_pylist()[:3] == ["r0", "r1", "r10"]
    assert on_s3["as_of"].equals(on_s3["version_2"])  # as-of-time equals as-of-version
    assert on_s3["as_of"].num_rows == 300
    r7, r8, r9, r299, nope = on_s3["online"]
    assert r7["sentiment"] == -1 and r7["input_ids"] == [1, 2, 3, 4]
    assert r8 is None and nope is None  # deleted, unknown
    assert r9["event_time"] == T0 + timedelta(days=2, hours=9) and r9["sentiment"] == 1
    assert r299["event_time"] == T0 + timedelta(hours=299 % 48)
    assert on_s3["sql"]["n"].sum() == 299  # every id but the deleted one, latest record
    assert on_s3["sql_as_of"].to_dict("records") == [{"n": 300, "ids": 300}]
    training = on_s3["training_set"]
    assert training["label"].tolist() == list(range(320))  # one row per entity row, in order
    missing = [i >= 150 for i in range(160)]  # r300 and up do not exist
    assert training["sentiment"].isna().tolist() == missing + [
        m or i == 4 for i, m in enumerate(missing)]  # r8 is deleted on day 6
    assert training.loc[3, "sentiment"] == 0 and training.loc[160 + 3, "sentiment"] == 1

    # ...and exactly what the same calls give on local disk.
    for key in ("report_version", "version", "operations", "online"):
        assert on_s3[key] == on_disk[key], key
    for key in ("history", "version_0", "as_of", "version_2"):
        assert on_s3[key].equals(on_disk[key]), key
    for key in ("sql", "sql_as_of", "training_set"):
        pd.testing.assert_frame_equal(on_s3[key], on_disk[key])
    assert on_s3["dataset"].equals(on_disk["dataset"])
    assert on_s3["dataset"].num_rows == 400  # every record but the deleted id's and its tombstone

    # The table lives in the bucket (partitioned by event date), nothing under the home.
    stored = keys(moto, bucket, "lake/reviews/")
    assert "lake/reviews/_delta_log/00000000000000000005.json" in stored
    assert any(k.startswith("lake/reviews/event_date=2024-03-0") for k in stored)
    assert not (tmp_path / "s3-home" / "offline").exists()


def test_delete_and_optimize_on_s3(moto: str, bucket: str, tmp_path: Path) -> None:
    with FeatureStore(tmp_path / "home", offline_store_url=f"s3://{bucket}/lake") as store:
        for name in ("reviews", "reviews2"):  # reviews2: a prefix of the other's name
            group = store.create_feature_group(name, record_id="review_id",
                                               event_time="event_time", df=reviews(range(1)))
            group.ingest(reviews(range(40)), batch_rows=10)
        metrics = store.offline.optimize("reviews")
        assert metrics["numFilesRemoved"] > metrics["numFilesAdded"] >= 1
        assert store.offline.read("reviews").num_rows == 40
        assert store.offline.read("reviews", version=0).num_rows == 10  # old files kept
        store.delete_feature_group("reviews")
        assert not store.offline.exists("reviews")
        assert keys(moto, bucket, "lake/reviews/") == []
        assert store.offline.read("reviews2").num_rows == 40


# ---------------------------------------------------------------- safe commits
class RaceProxy:
    """An HTTP forwarder in front of moto that makes a rival commit land first.

    Before it forwards the first ``PUT .../_delta_log/N.json`` (after the writer has chosen
    version ``N``), it runs ``rival`` against moto directly, so the writer's own put finds
    ``N`` taken: the race between two machines, made deterministic. With
    ``ignore_conditions`` it drops ``If-None-Match``/``If-Match``, as an S3 clone without
    conditional writes would. It records each commit put's status.
    """

    def __init__(self, upstream: str, rival: Callable[[], object], *,
                 ignore_conditions: bool = False) -> None:
        self.rival, self.statuses = rival, []
        target = urlsplit(upstream)
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def forward(self) -> None:
                commit = self.command == "PUT" and "/_delta_log/" in self.path \
                    and self.path.endswith(".json")
                if commit and proxy.rival is not None:
                    rival, proxy.rival = proxy.rival, None
                    rival()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                dropped = {"host"} | ({"if-none-match", "if-match"} if ignore_conditions
                                      else set())
                headers = {k: v for k, v in self.headers.items() if k.lower() not in dropped}
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                try:
                    conn.request(self.command, self.path, body=body,
                                 headers={**headers, "Host": target.netloc})
                    answer = conn.getresponse()
                    data = answer.read()
                finally:
                    conn.close()
                if commit:
                    proxy.statuses.append(answer.status)
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", answer.getheader("Content-Length", "0")
                                 if self.command == "HEAD" else str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> RaceProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def _append_through(root: str, lock_dir: str, endpoint: str, prefix: str
                    ) -> tuple[int | None, int]:
    """Append ``batch(prefix)`` to the group's table through ``endpoint`` (a proxy)."""
    for name in UNSAFE_VARIABLES:  # this process began with the caller's environment
        os.environ.pop(name, None)
    store = DeltaOfflineStore(root, lock_dir=Path(lock_dir), storage_options={
        "aws_endpoint_url": endpoint, "aws_access_key_id": TEST_KEYS[0],
        "aws_secret_access_key": TEST_KEYS[1], "aws_region": REGION})
    return store.append_versions("reviews", batch(prefix), event_time="event_time")


def batch(prefix: str, n: int = 5) -> pa.Table:
    return pa.table({"review_id": [f"{prefix}{i}" for i in range(n)],
                     "event_time": pa.array([T0] * n, EVENT_TIME_TYPE),
                     "write_time": pa.array([T0] * n, EVENT_TIME_TYPE),
                     "is_deleted": [False] * n})


@pytest.mark.parametrize("case", ["append", "create", "new-feature"])
def test_a_racing_commit_is_retried_not_lost(moto: str, bucket: str, tmp_path: Path,
                                             machine: Any, case: str) -> None:
    """Another machine commits the version I am about to commit: an append, the table's
    creation, or an append adding a feature (a metadata change, which makes delta-rs give up:
    the store writes again on the new version)."""
    root = f"s3://{bucket}/lake"
    # Two machines: separate lock folders, so only the S3 commit can keep them apart.
    rival = DeltaOfflineStore(root, lock_dir=tmp_path / "rival-locks")
    if case != "create":
        rival.append("reviews", batch("first"), event_time="event_time")
    rows = batch("rival")
    if case == "new-feature":
        rows = rows.append_column("stars", pa.array([5] * 5, pa.int64()))
    rival_versions = []

    def rival_commit() -> None:
        rival_versions.append(rival.append("reviews", rows, event_time="event_time"))

    with RaceProxy(moto, rival_commit) as proxy:
        before, version = machine.apply(_append_through, (root, str(tmp_path / "my-locks"),
                                                          proxy.url, "mine"))
    taken = 0 if case == "create" else 1
    assert rival_versions == [taken]  # the rival took it while I was committing it
    assert proxy.statuses[:2] == [412, 200]  # my put of that version was refused, then...
    assert (before, version) == (taken, taken + 1)  # ...I committed the next one
    assert sorted(c["version"] for c in rival.history("reviews")) == list(range(taken + 2))
    table = rival.read("reviews")
    writers = ["rival", "mine"] if case == "create" else ["first", "rival", "mine"]
    assert sorted(table.column("review_id").to_pylist()) == sorted(
        f"{w}{i}" for w in writers for i in range(5))
    if case == "new-feature":
        stars = {r["review_id"]: r["stars"] for r in table.select(["review_id", "stars"])
                 .to_pylist()}
        assert stars["rival0"] == 5 and stars["mine0"] is None


def test_without_conditional_writes_the_race_loses_a_commit(moto: str, bucket: str,
                                                             tmp_path: Path,
                                                             machine: Any) -> None:
    """Why the S3 service must honour If-None-Match (module docstring of offline.py): one
    that ignores it lets my put overwrite the rival's commit, and nothing can tell."""
    root = f"s3://{bucket}/lake"
    rival = DeltaOfflineStore(root, lock_dir=tmp_path / "rival-locks")
    rival.append("reviews", batch("first"), event_time="event_time")

    def rival_commit() -> None:
        assert rival.append("reviews", batch("rival"), event_time="event_time") == 1

    with RaceProxy(moto, rival_commit, ignore_conditions=True) as proxy:
        assert machine.apply(_append_through, (root, str(tmp_path / "my-locks"), proxy.url,
                                               "mine")) == (0, 1)
    assert proxy.statuses == [200]
    assert sorted(c["version"] for c in rival.history("reviews")) == [0, 1]
    assert not any(i.startswith("rival")
                   for i in rival.read("reviews").column("review_id").to_pylist())


def _writer(home: str, url: str, writer: str, ingests: int, ready: Any, go: Any,
            out: str) -> None:
    """One machine: its own home (registry, locks), the shared table on S3."""
    with FeatureStore(home, offline_store_url=url) as store:
        group = store.create_feature_group("reviews", record_id="review_id",
                                           event_time="event_time", df=reviews(range(1)))
        ready.set()
        go.wait(60)
        versions = []
        for k in range(ingests):
            rows = reviews(range(k * 20, k * 20 + 20))
            rows["review_id"] = f"{writer}-" + rows["review_id"]
            versions.append(group.ingest(rows).offline_version)
        assert group.put_record({"review_id": f"{writer}-single", "event_time": T0,
                                 "sentiment": 0, "score": 1.0, "input_ids": [0, 0, 0, 0],
                                 "split_type": "train"})
    Path(out).write_text(json.dumps(versions))


def test_two_processes_commit_to_one_s3_table_and_lose_nothing(bucket: str,
                                                               tmp_path: Path) -> None:
    url, ingests = f"s3://{bucket}/lake", 10
    context = multiprocessing.get_context("spawn")
    ready = [context.Event(), context.Event()]
    go = context.Event()
    writers = [context.Process(target=_writer, args=(
        str(tmp_path / name), url, name, ingests, ready[k], go, str(tmp_path / f"{name}.json")))
        for k, name in enumerate(("a", "b"))]
    for process in writers:
        process.start()
    try:
        for event in ready:
            assert event.wait(120), "a writer did not start"
        go.set()  # both have their group and start committing together
    finally:
        for process in writers:
            process.join(180)
            if process.is_alive():
                process.terminate()
                process.join(10)
    assert [p.exitcode for p in writers] == [0, 0]

    store = DeltaOfflineStore(url, lock_dir=tmp_path / "reader-locks")
    table = store.read("reviews")
    ids = table.column("review_id").to_pylist()
    expected = {f"{w}-r{i}" for w in "ab" for i in range(20 * ingests)} | {"a-single",
                                                                           "b-single"}
    assert len(ids) == len(expected) and set(ids) == expected  # every record, once
    commits = 2 * (ingests + 1)
    assert sorted(c["version"] for c in store.history("reviews")) == list(range(commits))
    assert store.version("reviews") == commits - 1
    reported = [v for name in "ab" for v in json.loads((tmp_path / f"{name}.json").read_text())]
    assert len(set(reported)) == len(reported) == 2 * ingests  # no version given out twice
    one = table.filter(pc.field("review_id") == "b-r37").to_pylist()
    assert len(one) == 1 and one[0]["score"] == 37 / 8


# ----------------------------------------------------------------- refusals
@pytest.mark.parametrize(("variable", "value", "option", "named"), [
    ("AWS_S3_ALLOW_UNSAFE_RENAME", "true", None, "AWS_S3_ALLOW_UNSAFE_RENAME"),
    ("AWS_S3_LOCKING_PROVIDER", "dynamodb", None, "AWS_S3_LOCKING_PROVIDER"),
    ("AWS_CONDITIONAL_PUT", "disabled", None, "conditional_put is 'disabled'"),
    (None, None, {"conditional_put": "disabled"}, "conditional_put is 'disabled'"),
])
def test_an_unsafe_commit_setup_is_refused_and_says_why(
        moto: str, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        variable: str | None, value: str | None, option: dict[str, str] | None,
        named: str) -> None:
    if variable:
        monkeypatch.setenv(variable, value or "")
    store = DeltaOfflineStore(f"s3://{bucket}/lake", lock_dir=tmp_path / "locks",
                              storage_options=option)
    with pytest.raises(ConfigurationError) as refused:
        store.append("reviews", batch("x"), event_time="event_time")
    message = str(refused.value)
    assert named in message
    assert "no safe setup is possible" in message and "If-None-Match" in message
    assert refused.value.fields["feature_group"] == "reviews"
    assert keys(moto, bucket) == []  # nothing was written
    assert not store.exists("reviews")  # reading still works


def test_endpoint_region_and_http_come_from_the_aws_environment(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://general.example")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://s3.example:9000")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.delenv("AWS_REGION", raising=False)
    for name in UNSAFE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    store = DeltaOfflineStore("s3://b/p", lock_dir=tmp_path)
    assert store.unsafe_writes is None
    assert store.storage_options == {
        "aws_endpoint": "http://s3.example:9000", "aws_endpoint_url_s3": "http://s3.example:9000",
        "aws_allow_http": "true", "aws_region": "eu-west-1", "aws_conditional_put": "etag",
        "aws_s3_allow_unsafe_rename": "false"}
    given = DeltaOfflineStore("s3://b/p", lock_dir=tmp_path, storage_options={
        "AWS_ENDPOINT_URL": "https://minio.internal", "region": "us-west-2"})
    assert given.storage_options is not None
    assert given.storage_options["aws_endpoint"] == "https://minio.internal"
    assert given.storage_options["aws_region"] == "us-west-2"
    assert "aws_allow_http" not in given.storage_options


def test_deltalake_before_1_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import deltalake

    monkeypatch.setattr(deltalake, "__version__", "0.25.5")
    for name in UNSAFE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    store = DeltaOfflineStore("s3://b/p", lock_dir=tmp_path)
    assert store.unsafe_writes is not None
    assert 'pip install "deltalake>=1,<2"' in store.unsafe_writes
    with pytest.raises(ConfigurationError, match="deltalake 0.25.5 may commit to S3 without"):
        store.optimize("reviews")

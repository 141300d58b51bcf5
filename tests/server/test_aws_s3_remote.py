"""Object bodies on a real S3 server that is not ours: `loopworks serve` with
``object_store_url=s3://...`` pointed at moto's standalone S3 server. boto3 talks to
loopworks' /aws as before; the bytes land in the other server's bucket (puts, copies,
multipart completions joined server-side), nothing under the home."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import loopworks

from _aws import aws_keys
from conftest import running_server

boto3 = pytest.importorskip("boto3", reason="boto3 is in the dev extra")
pytest.importorskip("moto.server", reason="moto[server] is in the dev extra")
from boto3.s3.transfer import TransferConfig  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

BLOB_BUCKET = "loopworks-bodies"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def moto_s3() -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, \
                    "moto's server did not start"
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _moto_client(url: str) -> object:
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture(scope="module")
def server(moto_s3: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[str, Path]]:
    _moto_client(moto_s3).create_bucket(Bucket=BLOB_BUCKET)
    home = tmp_path_factory.mktemp("remote-bodies") / "home"
    with loopworks.open(home) as lw:
        lw.workforce.add_worker("lead", role="admin")
    settings = {"LOOPWORKS_OBJECT_STORE_URL": f"s3://{BLOB_BUCKET}/objects",
                "LOOPWORKS_OBJECT_STORE_ENDPOINT": moto_s3,
                "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1"}
    with running_server(home, "operator-token", env=settings) as url:
        yield url, home


@pytest.fixture(scope="module")
def s3(server: tuple[str, Path]) -> object:
    url, home = server
    key_id, secret = aws_keys(home, "lead")
    return boto3.client("s3", endpoint_url=f"{url}/aws", region_name="us-east-1",
                        aws_access_key_id=key_id, aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 1},
                                      s3={"addressing_style": "path"}))


def _bodies(moto_s3: str) -> list[tuple[str, int]]:
    listed = _moto_client(moto_s3).list_objects_v2(Bucket=BLOB_BUCKET, Prefix="objects/blobs/")
    return [(o["Key"], o["Size"]) for o in listed.get("Contents", [])]


def test_bodies_live_on_the_other_server(s3, moto_s3: str, server: tuple[str, Path],
                                         tmp_path: Path) -> None:
    s3.create_bucket(Bucket="data")
    s3.put_object(Bucket="data", Key="a.txt", Body=b"hello remote bodies")
    assert s3.get_object(Bucket="data", Key="a.txt")["Body"].read() == b"hello remote bodies"
    assert s3.get_object(Bucket="data", Key="a.txt", Range="bytes=6-11")["Body"].read() \
        == b"remote"
    assert [size for _, size in _bodies(moto_s3)] == [19]
    s3.copy_object(Bucket="data", Key="b.txt", CopySource={"Bucket": "data", "Key": "a.txt"})
    assert s3.get_object(Bucket="data", Key="b.txt")["Body"].read() == b"hello remote bodies"
    assert len(_bodies(moto_s3)) == 2

    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(12 << 20))
    s3.upload_file(str(source), "data", "big.bin", Config=TransferConfig(
        multipart_threshold=5 << 20, multipart_chunksize=5 << 20))
    back = tmp_path / "back.bin"
    s3.download_file("data", "big.bin", str(back))
    assert hashlib.sha256(back.read_bytes()).digest() == \
        hashlib.sha256(source.read_bytes()).digest()
    assert s3.head_object(Bucket="data", Key="big.bin")["ETag"].endswith('-3"')
    # The parts were joined on the other server; only the joined body is left there.
    assert sorted(size for _, size in _bodies(moto_s3)) == [19, 19, 12 << 20]
    blobs = server[1] / "s3" / "blobs"
    assert not blobs.exists() or not any(p.is_file() for p in blobs.rglob("*"))

    s3.put_object(Bucket="data", Key="a.txt", Body=b"replaced")
    s3.delete_object(Bucket="data", Key="b.txt")
    s3.delete_object(Bucket="data", Key="big.bin")
    assert [size for _, size in _bodies(moto_s3)] == [8]
    with pytest.raises(ClientError) as caught:
        s3.head_object(Bucket="data", Key="b.txt")
    assert caught.value.response["Error"]["Code"] == "404"

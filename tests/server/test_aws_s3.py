"""S3 through boto3, unmodified, against a live `loopworks serve`: buckets, objects,
ranges, listings with prefixes and delimiters, copies, batch deletes and multipart uploads
(boto3's own upload_file above its threshold); botocore parses every answer."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import loopworks

from _aws import aws_keys, sign_v4
from conftest import running_server

boto3 = pytest.importorskip("boto3", reason="boto3 is in the dev extra")
from boto3.s3.transfer import TransferConfig  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402


def _client(url: str, home: Path, worker: str) -> object:
    key_id, secret = aws_keys(home, worker)
    return boto3.client("s3", endpoint_url=f"{url}/aws", region_name="us-east-1",
                        aws_access_key_id=key_id, aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 1},
                                      s3={"addressing_style": "path"}))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    home = tmp_path_factory.mktemp("s3") / "home"
    with loopworks.open(home) as lw:
        lw.workforce.add_worker("lead", role="admin")
        lw.workforce.add_worker("ann", role="annotator")
    with running_server(home, "operator-token") as url:
        yield url, home


@pytest.fixture(scope="module")
def s3(server: tuple[str, Path]) -> object:
    return _client(server[0], server[1], "lead")


def test_buckets(s3) -> None:
    s3.create_bucket(Bucket="datasets")
    s3.head_bucket(Bucket="datasets")
    assert "datasets" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    with pytest.raises(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket="datasets")
    with pytest.raises(ClientError) as caught:
        s3.create_bucket(Bucket="Not_A_Bucket")
    assert caught.value.response["Error"]["Code"] == "InvalidBucketName"
    with pytest.raises(ClientError) as caught:
        s3.head_bucket(Bucket="nothing-here")
    assert caught.value.response["Error"]["Code"] == "404"
    s3.put_object(Bucket="datasets", Key="x", Body=b"1")
    with pytest.raises(ClientError) as caught:
        s3.delete_bucket(Bucket="datasets")
    assert caught.value.response["Error"]["Code"] == "BucketNotEmpty"
    s3.delete_object(Bucket="datasets", Key="x")
    s3.delete_bucket(Bucket="datasets")
    assert "datasets" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_objects_round_trip(s3) -> None:
    s3.create_bucket(Bucket="objects")
    body = "Sturdy & light — 5 stars ✓".encode()
    put = s3.put_object(Bucket="objects", Key="reviews/a b+c.txt", Body=body,
                        ContentType="text/plain", Metadata={"source": "loopworks"})
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    got = s3.get_object(Bucket="objects", Key="reviews/a b+c.txt")
    assert got["Body"].read() == body
    assert got["ContentType"] == "text/plain" and got["Metadata"] == {"source": "loopworks"}
    part = s3.get_object(Bucket="objects", Key="reviews/a b+c.txt", Range="bytes=0-5")
    assert part["Body"].read() == body[:6] and part["ContentRange"] == f"bytes 0-5/{len(body)}"
    tail = s3.get_object(Bucket="objects", Key="reviews/a b+c.txt", Range="bytes=-3")
    assert tail["Body"].read() == body[-3:]
    head = s3.head_object(Bucket="objects", Key="reviews/a b+c.txt")
    assert head["ContentLength"] == len(body)
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket="objects", Key="missing")
    s3.copy_object(Bucket="objects", Key="copy.txt",
                   CopySource={"Bucket": "objects", "Key": "reviews/a b+c.txt"})
    assert s3.get_object(Bucket="objects", Key="copy.txt")["Body"].read() == body
    s3.put_object(Bucket="objects", Key="reviews/a b+c.txt", Body=b"replaced")
    assert s3.get_object(Bucket="objects", Key="reviews/a b+c.txt")["Body"].read() == \
        b"replaced"
    s3.delete_object(Bucket="objects", Key="copy.txt")
    s3.delete_object(Bucket="objects", Key="copy.txt")  # deleting twice is fine, as in S3
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket="objects", Key="copy.txt")


def test_listing_with_prefixes_delimiters_and_pages(s3) -> None:
    s3.create_bucket(Bucket="listing")
    keys = ["a/1.txt", "a/2.txt", "a/b/3.txt", "c.txt", "d/4.txt", "é/5.txt", "z z.txt"]
    for key in keys:
        s3.put_object(Bucket="listing", Key=key, Body=key.encode())
    every = s3.list_objects_v2(Bucket="listing")
    assert [o["Key"] for o in every["Contents"]] == sorted(keys, key=lambda k: k.encode())
    top = s3.list_objects_v2(Bucket="listing", Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["a/", "d/", "é/"]
    assert [o["Key"] for o in top["Contents"]] == ["c.txt", "z z.txt"]
    under_a = s3.list_objects_v2(Bucket="listing", Prefix="a/", Delimiter="/")
    assert [o["Key"] for o in under_a["Contents"]] == ["a/1.txt", "a/2.txt"]
    assert [p["Prefix"] for p in under_a["CommonPrefixes"]] == ["a/b/"]
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket="listing", PaginationConfig={"PageSize": 2})
    seen = [o["Key"] for page in pages for o in page.get("Contents", [])]
    assert seen == sorted(keys, key=lambda k: k.encode())
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket="listing", Delimiter="/", PaginationConfig={"PageSize": 2})
    rolled = [(p.get("CommonPrefixes", []), p.get("Contents", [])) for p in pages]
    assert [x["Prefix"] for prefixes, _ in rolled for x in prefixes] == ["a/", "d/", "é/"]
    assert [x["Key"] for _, contents in rolled for x in contents] == ["c.txt", "z z.txt"]
    gone = s3.delete_objects(Bucket="listing", Delete={"Objects": [
        {"Key": "a/1.txt"}, {"Key": "c.txt"}, {"Key": "never-was"}]})
    assert sorted(d["Key"] for d in gone["Deleted"]) == ["a/1.txt", "c.txt", "never-was"]
    left = s3.list_objects_v2(Bucket="listing", Prefix="a/")
    assert [o["Key"] for o in left["Contents"]] == ["a/2.txt", "a/b/3.txt"]


def test_multipart_upload_of_a_large_file(s3, tmp_path: Path) -> None:
    s3.create_bucket(Bucket="large")
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(12 << 20))
    config = TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20)
    s3.upload_file(str(source), "large", "big.bin", Config=config)
    head = s3.head_object(Bucket="large", Key="big.bin")
    assert head["ContentLength"] == 12 << 20 and head["ETag"].endswith('-3"')
    target = tmp_path / "back.bin"
    s3.download_file("large", "big.bin", str(target), Config=config)
    assert hashlib.sha256(target.read_bytes()).digest() == \
        hashlib.sha256(source.read_bytes()).digest()
    upload = s3.create_multipart_upload(Bucket="large", Key="abandoned.bin")
    s3.upload_part(Bucket="large", Key="abandoned.bin", UploadId=upload["UploadId"],
                   PartNumber=1, Body=b"x" * 10)
    s3.abort_multipart_upload(Bucket="large", Key="abandoned.bin", UploadId=upload["UploadId"])
    with pytest.raises(s3.exceptions.NoSuchUpload):
        s3.upload_part(Bucket="large", Key="abandoned.bin", UploadId=upload["UploadId"],
                       PartNumber=2, Body=b"y")
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket="large", Key="abandoned.bin")


def test_a_body_that_is_not_the_signed_one_writes_nothing(server: tuple[str, Path],
                                                          s3) -> None:

    s3.create_bucket(Bucket="checked")

    def tamper(request, **_: object) -> None:
        request.body = b"the signed bodX"  # same length: only the bytes differ

    s3.meta.events.register_first("before-send.s3.PutObject", tamper)
    try:
        with pytest.raises(ClientError) as caught:
            s3.put_object(Bucket="checked", Key="k", Body=b"the signed body")
    finally:
        s3.meta.events.unregister("before-send.s3.PutObject", tamper)
    assert caught.value.response["Error"]["Code"] == "XAmzContentSHA256Mismatch"
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket="checked", Key="k")
    assert not list((server[1] / "s3" / "staging").glob("*"))  # nothing left behind


def test_only_admins_use_s3(server: tuple[str, Path]) -> None:
    ann = _client(server[0], server[1], "ann")
    with pytest.raises(ClientError) as caught:
        ann.list_buckets()
    assert caught.value.response["Error"]["Code"] == "AccessDenied"


@pytest.mark.parametrize("version", ["s3v2-default", "s3v4"])
def test_presigned_urls(server: tuple[str, Path], s3, version: str) -> None:
    """Links made by generate_presigned_url (Signature Version 2, boto3's default for S3,
    or version 4) work for anyone holding them, until they expire; a changed signature,
    path or expiry is refused."""
    import re
    import time

    import httpx

    client = s3
    if version == "s3v4":
        client = boto3.client("s3", endpoint_url=s3.meta.endpoint_url, region_name="us-east-1",
                              aws_access_key_id=s3._request_signer._credentials.access_key,
                              aws_secret_access_key=s3._request_signer._credentials.secret_key,
                              config=Config(signature_version="s3v4",
                                            s3={"addressing_style": "path"}))
    bucket = f"shared-{version}"
    client.create_bucket(Bucket=bucket)
    put_url = client.generate_presigned_url("put_object", Params={"Bucket": bucket,
                                                                  "Key": "notes/a b.txt"})
    assert httpx.put(put_url, content=b"shared by link").status_code == 200
    get_url = client.generate_presigned_url("get_object", Params={"Bucket": bucket,
                                                                  "Key": "notes/a b.txt"})
    assert httpx.get(get_url).content == b"shared by link"
    forged = re.sub(r"(Signature=)([^&])", lambda m: m[1] + ("A" if m[2] != "A" else "B"),
                    get_url)
    refused = httpx.get(forged)
    assert refused.status_code == 403 and b"SignatureDoesNotMatch" in refused.content
    other_key = get_url.replace("notes/a%20b.txt", "notes/other.txt")
    assert httpx.get(other_key).status_code == 403  # the path is part of the signature
    expired = client.generate_presigned_url("get_object", Params={"Bucket": bucket,
                                                                  "Key": "notes/a b.txt"},
                                            ExpiresIn=1)
    time.sleep(2.1)
    stale = httpx.get(expired)
    assert stale.status_code == 403 and b"expired" in stale.content


def _sign(url: str, key: tuple[str, str], method: str, path: str, query: str,
          body: bytes = b"") -> object:
    """An S3 request signed by hand (S3 wants the payload's hash as a header)."""
    import hashlib

    return sign_v4(url, key, method=method, path=path, query=query, body=body, service="s3",
                   headers={"x-amz-content-sha256": hashlib.sha256(body).hexdigest()})


def test_every_operation_of_the_s3_model_is_answered_in_shape(
        server: tuple[str, Path]) -> None:
    """Each of S3's operations, as its model routes it: the ones this server has are
    served, the sub-resources it has not answer NotImplemented in S3's XML; none is a 5xx
    other than that, or a framework page."""
    import botocore.session

    url, home = server
    key = aws_keys(home, "lead")
    assert _sign(url, key, "PUT", "/aws/enum-bucket", "").status_code == 200
    served = {"location", "delete", "uploads", "list-type=2"}
    model = botocore.session.get_session().get_service_model("s3")
    for operation in model.operation_names:
        http = model.operation_model(operation).http
        uri = http["requestUri"].replace("{Bucket}", "enum-bucket").replace("{Key+}", "k")
        path, _, query = uri.partition("?")
        query = "&".join(part if "=" in part else f"{part}=" for part in query.split("&")
                         if part and not part.startswith("x-id="))
        reply = _sign(url, key, http["method"], "/aws" + path, query)
        assert reply.headers.get("content-type", "").startswith("application/xml") \
            or not reply.content, (operation, reply.status_code, reply.text[:200])
        subresource = query.split("=", 1)[0] if query else ""
        if subresource and query.rstrip("=") not in served and subresource not in served:
            assert reply.status_code == 501 and b"NotImplemented" in reply.content, \
                (operation, reply.status_code, reply.text[:200])
        else:  # ours; without its required parameters it may be answered as not supported
            assert reply.status_code < 500 or (
                reply.status_code == 501 and b"NotImplemented" in reply.content), \
                (operation, reply.status_code, reply.text[:200])


def test_virtual_host_addressing(server: tuple[str, Path]) -> None:
    """boto3 told to address buckets by host name sends ``Host: BUCKET.localhost:PORT``
    (any ``*.localhost`` name is this machine, RFC 6761). This machine's resolver does not
    know those names, so the connection is sent to 127.0.0.1 with the Host header as signed."""
    url, home = server
    port = url.rsplit(":", 1)[1]
    key_id, secret = aws_keys(home, "lead")
    s3 = boto3.client("s3", endpoint_url=f"http://localhost:{port}/aws", region_name="us-east-1",
                      aws_access_key_id=key_id, aws_secret_access_key=secret,
                      config=Config(retries={"max_attempts": 1},
                                    s3={"addressing_style": "virtual"}))
    hosts: list[str] = []

    def to_loopback(request, **_) -> None:
        scheme, _, rest = request.url.partition("://")
        host, _, path = rest.partition("/")
        hosts.append(host)
        request.headers["Host"] = host
        request.url = f"{scheme}://127.0.0.1:{port}/{path}"

    s3.meta.events.register_last("before-send.s3.*", to_loopback)
    s3.create_bucket(Bucket="by-host")
    s3.put_object(Bucket="by-host", Key="notes/a.txt", Body=b"virtual")
    assert s3.get_object(Bucket="by-host", Key="notes/a.txt")["Body"].read() == b"virtual"
    listed = s3.list_objects_v2(Bucket="by-host", Prefix="notes/")
    assert [o["Key"] for o in listed["Contents"]] == ["notes/a.txt"]
    assert f"by-host.localhost:{port}" in hosts
    path_style = _client(url, home, "lead")  # the same bucket, addressed by path
    assert path_style.get_object(Bucket="by-host", Key="notes/a.txt")["Body"].read() \
        == b"virtual"
    s3.delete_object(Bucket="by-host", Key="notes/a.txt")
    s3.delete_bucket(Bucket="by-host")


def test_a_body_kept_on_another_machines_disk_is_an_error_not_a_short_reply(
        server: tuple[str, Path], s3, tmp_path: Path) -> None:
    """A second server on the same database but another home (another machine, no
    object_store_url shared) finds the key, not the body: a clean 500 that says why,
    before any byte of a 200."""
    url, home = server
    s3.create_bucket(Bucket="elsewhere")
    s3.put_object(Bucket="elsewhere", Key="a.txt", Body=b"kept on the first server's disk")
    other = {"LOOPWORKS_DATABASE_URL": f"sqlite:///{home / 'loopworks.db'}"}
    # Started with a secret of its own (its home's), it is refused: the others' sessions
    # and AWS keys would not work on it.
    refused = subprocess.run(
        [sys.executable, "-m", "loopworks.cli", "serve", "--port", "9"], capture_output=True,
        text=True, env={**os.environ, **other, "LOOPWORKS_HOME": str(tmp_path / "machine-b")},
        timeout=120)
    assert refused.returncode != 0
    assert "secret_key setting (LOOPWORKS_SECRET_KEY) to the deployment's" in refused.stderr
    other["LOOPWORKS_SECRET_KEY"] = (home / "secret_key").read_text().strip()
    with running_server(tmp_path / "machine-b", "operator-token", env=other) as url_b:
        s3_b = _client(url_b, home, "lead")
        assert s3_b.head_object(Bucket="elsewhere", Key="a.txt")["ContentLength"] == 31
        with pytest.raises(ClientError) as caught:
            s3_b.get_object(Bucket="elsewhere", Key="a.txt")
    error = caught.value.response["Error"]
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert error["Code"] == "InternalError"
    assert "every server of one deployment needs the same object_store_url" in error["Message"]
    assert s3.get_object(Bucket="elsewhere", Key="a.txt")["Body"].read() == \
        b"kept on the first server's disk"

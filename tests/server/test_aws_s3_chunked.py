"""aws-chunked uploads: what boto3 sends over HTTPS (unsigned chunks with a CRC32 trailer)
and what the Java, Go and .NET SDKs send (every chunk signed, the trailer too), against a
live `loopworks serve`. The signed chunks are built here by AWS's published algorithm, and
the decoder is checked against the signatures of AWS's own worked example."""

from __future__ import annotations

import base64
import hashlib
import hmac
import shutil
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import loopworks
from loopworks.server.aws.chunked import AwsChunkedDecoder
from loopworks.server.aws.protocols import AwsError
from loopworks.server.aws.sigv4 import ChunkChain

from _aws import aws_keys, signing_key, v4_headers
from conftest import running_server

boto3 = pytest.importorskip("boto3", reason="boto3 is in the dev extra")
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
EMPTY = hashlib.sha256(b"").hexdigest()


def chunk_signature(key: bytes, stamp: str, scope: str, previous: str, data: bytes) -> str:
    to_sign = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", stamp, scope, previous, EMPTY,
                         hashlib.sha256(data).hexdigest()])
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def signed_body(key: bytes, stamp: str, scope: str, seed: str, chunks: list[bytes],
                trailer: dict[str, str] | None = None) -> bytes:
    """The body of a signed aws-chunked upload (with a signed trailer when given)."""
    out, previous = [], seed
    for data in [*chunks, b""]:
        previous = chunk_signature(key, stamp, scope, previous, data)
        out.append(f"{len(data):x};chunk-signature={previous}\r\n".encode() + data
                   + (b"\r\n" if data else b""))
    if trailer is None:
        return b"".join(out) + b"\r\n"
    lines = "".join(f"{k}:{v}\n" for k, v in trailer.items()).encode()
    to_sign = "\n".join(["AWS4-HMAC-SHA256-TRAILER", stamp, scope, previous,
                         hashlib.sha256(lines).hexdigest()])
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return (b"".join(out) + lines.replace(b"\n", b"\r\n")
            + f"x-amz-trailer-signature:{signature}\r\n\r\n".encode())


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


# ------------------------------------------------------------------ the decoder alone
# AWS's worked example ("Signature calculations ... in multiple chunks", Example: PUT Object):
# the example key, 20130524, us-east-1, a 65,536-byte and a 1,024-byte chunk of "a", and the
# seed and chunk signatures that page lists.
EXAMPLE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
EXAMPLE_SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
EXAMPLE_SIGNATURES = ["ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
                      "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
                      "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"]


def example_chain() -> ChunkChain:
    key = signing_key(EXAMPLE_SECRET, "20130524", "s3")
    return ChunkChain(key, "20130524T000000Z", "20130524/us-east-1/s3/aws4_request",
                      EXAMPLE_SEED)


def example_body() -> bytes:
    chunks = [b"a" * 65536, b"a" * 1024]
    body = b"".join(f"{len(c):x};chunk-signature={s}\r\n".encode() + c + b"\r\n"
                    for c, s in zip(chunks, EXAMPLE_SIGNATURES, strict=False))
    return body + f"0;chunk-signature={EXAMPLE_SIGNATURES[2]}\r\n\r\n".encode()


def decode(decoder: AwsChunkedDecoder, body: bytes, piece: int) -> bytes:
    out = []
    for start in range(0, len(body), piece):
        out += decoder.feed(body[start:start + piece])
    decoder.close()
    return b"".join(out)


@pytest.mark.parametrize("piece", [1, 7, 4096, 1 << 20])
def test_decoder_accepts_aws_worked_example_in_any_pieces(piece: int) -> None:
    body = example_body()
    assert len(body) == 66824  # the example's Content-Length
    decoder = AwsChunkedDecoder(example_chain(), trailer=False, decoded_length=66560)
    assert decode(decoder, body, piece) == b"a" * 66560


def test_decoder_refuses_changed_missing_or_reordered_chunks() -> None:
    body = example_body()
    tampered = body.replace(b"a" * 10, b"a" * 9 + b"b", 1)
    with pytest.raises(AwsError) as caught:
        decode(AwsChunkedDecoder(example_chain(), trailer=False, decoded_length=None),
               tampered, 4096)
    assert caught.value.code == "SignatureDoesNotMatch"
    first_end = body.index(b"\r\n", 100) + 2  # after the first chunk's data
    second_end = body.index(b"0;chunk-signature")
    reordered = body[first_end:second_end] + body[:first_end] + body[second_end:]
    with pytest.raises(AwsError) as caught:
        decode(AwsChunkedDecoder(example_chain(), trailer=False, decoded_length=None),
               reordered, 4096)
    assert caught.value.code == "SignatureDoesNotMatch"
    with pytest.raises(AwsError) as caught:  # cut short: the last chunk never came
        decode(AwsChunkedDecoder(example_chain(), trailer=False, decoded_length=66560),
               body[:second_end], 4096)
    assert caught.value.code == "IncompleteBody"
    with pytest.raises(AwsError) as caught:  # the length the client announced is not this
        decode(AwsChunkedDecoder(example_chain(), trailer=False, decoded_length=70000),
               body, 4096)
    assert caught.value.code == "IncompleteBody"
    with pytest.raises(AwsError) as caught:
        decode(AwsChunkedDecoder(None, trailer=True, decoded_length=None),
               b"zz\r\nab\r\n0\r\n\r\n", 3)
    assert caught.value.code == "InvalidRequest"
    assert "chunk size" in caught.value.message


# ------------------------------------------------------------------ against the server
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    home = tmp_path_factory.mktemp("chunked") / "home"
    with loopworks.open(home) as lw:
        lw.workforce.add_worker("lead", role="admin")
    with running_server(home, "operator-token") as url:
        key = aws_keys(home, "lead")
        client = boto3.client("s3", endpoint_url=f"{url}/aws", region_name="us-east-1",
                              aws_access_key_id=key[0], aws_secret_access_key=key[1],
                              config=Config(s3={"addressing_style": "path"}))
        client.create_bucket(Bucket="chunks")
        yield url, home


def put_signed(url: str, key: tuple[str, str], object_key: str, chunks: list[bytes], *,
               form: str = SIGNED, trailer: dict[str, str] | None = None,
               tamper: bool = False) -> httpx.Response:
    size = sum(map(len, chunks))
    path = f"/aws/chunks/{object_key}"
    headers = {"x-amz-content-sha256": form, "content-encoding": "aws-chunked",
               "x-amz-decoded-content-length": str(size)}
    if trailer:
        headers["x-amz-trailer"] = ",".join(trailer)
    signed = v4_headers(url, key, method="PUT", path=path, headers=headers,
                        payload_hash=form, service="s3")
    seed = signed["authorization"].rsplit("Signature=", 1)[1]
    stamp = signed["x-amz-date"]
    body = signed_body(signing_key(key[1], stamp[:8], "s3"), stamp,
                       f"{stamp[:8]}/us-east-1/s3/aws4_request", seed, chunks, trailer)
    if tamper:
        body = body.replace(b"x", b"y", 1)
    return httpx.put(url + path, content=body, headers=signed)


def test_signed_chunks_store_the_object(server: tuple[str, Path]) -> None:
    url, home = server
    key = aws_keys(home, "lead")
    chunks = [b"x" * 65536, bytes(range(256)) * 40, b"end"]
    answer = put_signed(url, key, "signed.bin", chunks)
    assert answer.status_code == 200, answer.text
    data = b"".join(chunks)
    assert answer.headers["etag"] == f'"{hashlib.md5(data).hexdigest()}"'
    s3 = boto3.client("s3", endpoint_url=f"{url}/aws", region_name="us-east-1",
                      aws_access_key_id=key[0], aws_secret_access_key=key[1],
                      config=Config(s3={"addressing_style": "path"}))
    assert s3.get_object(Bucket="chunks", Key="signed.bin")["Body"].read() == data


def test_signed_chunks_with_a_signed_checksum_trailer(server: tuple[str, Path]) -> None:
    url, home = server
    key = aws_keys(home, "lead")
    chunks = [b"x" * 9000, b"tail"]
    data = b"".join(chunks)
    answer = put_signed(url, key, "trailer.bin", chunks, form=SIGNED_TRAILER,
                        trailer={"x-amz-checksum-crc32": crc32_b64(data)})
    assert answer.status_code == 200, answer.text
    wrong = put_signed(url, key, "trailer-wrong.bin", chunks, form=SIGNED_TRAILER,
                       trailer={"x-amz-checksum-crc32": crc32_b64(b"other")})
    assert wrong.status_code == 400
    assert "<Code>BadDigest</Code>" in wrong.text


def test_a_changed_chunk_is_refused_and_nothing_is_stored(server: tuple[str, Path]) -> None:
    url, home = server
    key = aws_keys(home, "lead")
    answer = put_signed(url, key, "tampered.bin", [b"x" * 9000], tamper=True)
    assert answer.status_code == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in answer.text
    s3 = boto3.client("s3", endpoint_url=f"{url}/aws", region_name="us-east-1",
                      aws_access_key_id=key[0], aws_secret_access_key=key[1],
                      config=Config(s3={"addressing_style": "path"}))
    with pytest.raises(ClientError) as caught:
        s3.head_object(Bucket="chunks", Key="tampered.bin")
    assert caught.value.response["Error"]["Code"] == "404"


def test_unsigned_trailer_with_a_wrong_crc_is_refused(server: tuple[str, Path]) -> None:
    url, home = server
    key = aws_keys(home, "lead")
    data = b"hello chunks"
    body = (f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n"
            + f"x-amz-checksum-crc32:{crc32_b64(b'not this')}\r\n\r\n".encode())
    path = "/aws/chunks/unsigned.bin"
    headers = v4_headers(url, key, method="PUT", path=path, payload_hash=UNSIGNED_TRAILER,
                         service="s3", headers={"x-amz-content-sha256": UNSIGNED_TRAILER,
                                                "content-encoding": "aws-chunked",
                                                "x-amz-trailer": "x-amz-checksum-crc32"})
    answer = httpx.put(url + path, content=body, headers=headers)
    assert answer.status_code == 400
    assert "<Code>BadDigest</Code>" in answer.text


# ------------------------------------------------------------------ boto3 over HTTPS
@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Path]]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: no certificate for an HTTPS server")
    folder = tmp_path_factory.mktemp("tls")
    cert, private = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(private), "-out", str(cert)],
                   check=True, capture_output=True)
    home = folder / "home"
    with loopworks.open(home) as lw:
        lw.workforce.add_worker("lead", role="admin")
    with running_server(home, "operator-token", tls=(cert, private)) as url:
        yield url, home, cert


def test_boto3_over_https_streams_with_a_checksum_trailer(
        tls_server: tuple[str, Path, Path], tmp_path: Path) -> None:
    """Over TLS botocore sends uploads aws-chunked with an unsigned CRC32 trailer."""
    url, home, cert = tls_server
    key = aws_keys(home, "lead")
    seen: list[str] = []
    s3 = boto3.client("s3", endpoint_url=f"{url}/aws", region_name="us-east-1",
                      aws_access_key_id=key[0], aws_secret_access_key=key[1], verify=str(cert),
                      config=Config(s3={"addressing_style": "path"},
                                    retries={"max_attempts": 1}))
    s3.meta.events.register("before-send.s3.*", lambda request, **_: seen.append(
        request.headers.get("x-amz-content-sha256", b"").decode()
        if isinstance(request.headers.get("x-amz-content-sha256"), bytes)
        else request.headers.get("x-amz-content-sha256", "")))
    s3.create_bucket(Bucket="secure")
    source = tmp_path / "data.bin"
    source.write_bytes(bytes(range(256)) * 4096 * 10)  # 10 MB: multipart, parts chunked
    s3.upload_file(str(source), "secure", "data.bin")
    s3.put_object(Bucket="secure", Key="small.txt", Body=b"small body")
    assert UNSIGNED_TRAILER in seen, seen
    back = tmp_path / "back.bin"
    s3.download_file("secure", "data.bin", str(back))
    assert back.read_bytes() == source.read_bytes()
    assert s3.get_object(Bucket="secure", Key="small.txt")["Body"].read() == b"small body"
    s3.close()

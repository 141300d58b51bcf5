"""Shared pieces of the AWS-endpoint tests: a worker's key pair as a user gets it, and a
request signed by hand with Signature Version 4 (so a test controls the clock, the scope,
the body and the operation, which boto3 would not let it)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path

import httpx
from click.testing import CliRunner

from loopworks.cli import main

REGION = "us-east-1"


def aws_keys(home: Path, worker: str) -> tuple[str, str]:
    """(access key id, secret) from `loopworks worker aws-keys`, as its export lines say."""
    shown = CliRunner().invoke(main, ["worker", "aws-keys", worker, "--home", str(home)])
    assert shown.exit_code == 0, shown.output
    exports = dict(line.removeprefix("export ").split("=", 1)
                   for line in shown.stdout.splitlines() if line.startswith("export "))
    return exports["AWS_ACCESS_KEY_ID"], exports["AWS_SECRET_ACCESS_KEY"]


def sign_v4(url: str, key: tuple[str, str], *, method: str, path: str, query: str = "",
            headers: dict[str, str] | None = None, body: bytes = b"",
            service: str = "sagemaker", when: datetime | None = None,
            signed_body: bytes | None = None) -> httpx.Response:
    """Send a request signed as AWS's algorithm says; ``signed_body`` (default ``body``)
    is the body whose hash is signed."""
    stamp = (when or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    payload = hashlib.sha256(body if signed_body is None else signed_body).hexdigest()
    headers = {"host": url.removeprefix("http://"), "x-amz-date": stamp,
               **{k.lower(): v for k, v in (headers or {}).items()}}
    signed = ";".join(sorted(headers))
    pairs = sorted(p.partition("=") for p in query.split("&") if p)
    canonical = "\n".join([method, path, "&".join(f"{k}={v}" for k, _, v in pairs),
                           "\n".join(f"{k}:{headers[k]}" for k in sorted(headers)) + "\n",
                           signed, payload])
    scope = f"{stamp[:8]}/{REGION}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    k = f"AWS4{key[1]}".encode()
    for part in (stamp[:8], REGION, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={key[0]}/{scope}, SignedHeaders={signed}, "
        f"Signature={hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()}")
    return httpx.request(method, f"{url}{path}" + (f"?{query}" if query else ""),
                         content=body, headers=headers)

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
    payload = hashlib.sha256(body if signed_body is None else signed_body).hexdigest()
    signed = v4_headers(url, key, method=method, path=path, query=query, headers=headers,
                        payload_hash=payload, service=service, when=when)
    return httpx.request(method, f"{url}{path}" + (f"?{query}" if query else ""),
                         content=body, headers=signed)


def signing_key(secret: str, date: str, service: str) -> bytes:
    """The key of a day's scope, as AWS's algorithm derives it."""
    k = f"AWS4{secret}".encode()
    for part in (date, REGION, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return k


def v4_headers(url: str, key: tuple[str, str], *, method: str, path: str, query: str = "",
               headers: dict[str, str] | None = None, payload_hash: str,
               service: str = "sagemaker", when: datetime | None = None) -> dict[str, str]:
    """The headers of a request signed with Signature Version 4, ``authorization`` last;
    ``payload_hash`` is what ``x-amz-content-sha256`` says (a hash or a STREAMING form)."""
    stamp = (when or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    payload = payload_hash
    headers = {"host": url.split("://", 1)[-1], "x-amz-date": stamp,
               **{k.lower(): v for k, v in (headers or {}).items()}}
    signed = ";".join(sorted(headers))
    pairs = sorted(p.partition("=") for p in query.split("&") if p)
    canonical = "\n".join([method, path, "&".join(f"{k}={v}" for k, _, v in pairs),
                           "\n".join(f"{k}:{headers[k]}" for k in sorted(headers)) + "\n",
                           signed, payload])
    scope = f"{stamp[:8]}/{REGION}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    k = signing_key(key[1], stamp[:8], service)
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={key[0]}/{scope}, SignedHeaders={signed}, "
        f"Signature={hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()}")
    return headers


def clients(url: str, key: tuple[str, str], *services: str, read_timeout: int = 60) -> list:
    """boto3 clients of a worker's key for the server at ``url`` (one attempt each, S3 with
    path-style addresses), as a SageMaker user would build them."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(aws_access_key_id=key[0], aws_secret_access_key=key[1],
                                    region_name=REGION)
    made = []
    for service in services:
        extra = {"s3": {"addressing_style": "path"}} if service == "s3" else {}
        made.append(session.client(service, endpoint_url=f"{url}/aws", config=Config(
            retries={"max_attempts": 1}, read_timeout=read_timeout, **extra)))
    return made


def sdk_env(url: str, key: tuple[str, str], folder: Path) -> dict[str, str]:
    """The environment of a process running the SageMaker SDK against the server: only
    AWS_ENDPOINT_URL and the key say where AWS is; no telemetry, HOME in ``folder``."""
    import os

    config = folder / "sagemaker.yaml"  # no telemetry calls to AWS from a test
    config.write_text("SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n"
                      "      TelemetryOptOut: true\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL=f"{url}/aws", AWS_DEFAULT_REGION=REGION,
               AWS_ACCESS_KEY_ID=key[0], AWS_SECRET_ACCESS_KEY=key[1],
               SAGEMAKER_USER_CONFIG_OVERRIDE=str(config),
               SAGEMAKER_SUPPRESS_V2_WARNING="1", HOME=str(folder))
    return env

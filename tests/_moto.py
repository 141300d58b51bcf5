"""moto's standalone server (``python -m moto.server``) on a free port: a real S3 (and
DynamoDB, ...) endpoint that is not ours, for tests and benchmarks.

    with moto_server() as endpoint:          # "http://127.0.0.1:PORT"
        with moto_env(endpoint):             # AWS_ENDPOINT_URL, test keys, region
            ...

It needs ``moto[server]`` (the dev extra); callers skip with a reason when it is missing.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

__all__ = ["REGION", "TEST_KEYS", "create_bucket", "free_port", "moto_env", "moto_server",
           "moto_variables"]

REGION = "us-east-1"
#: moto accepts any key pair; these are what every test and benchmark uses.
TEST_KEYS = ("testing", "testing")


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def moto_server(*, timeout: float = 60.0) -> Iterator[str]:
    """Run moto's server on a free port until the block ends; yields its endpoint URL.

    Readiness is an HTTP answer on ``/moto-api/`` (not merely an open port). Should the
    server die or not answer within ``timeout`` seconds, the error shows its output.
    """
    import http.client

    port = free_port()
    with tempfile.TemporaryFile("w+") as output:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port)],
                                stdout=output, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while True:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                try:
                    conn.request("GET", "/moto-api/")
                    conn.getresponse().read()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        output.seek(0)
                        raise RuntimeError(
                            f"moto's server did not start on port {port} "
                            f"(exit code {proc.poll()}); its output:\n{output.read()[-4000:]}"
                        ) from None
                    time.sleep(0.1)
                finally:
                    conn.close()
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def moto_variables(endpoint: str) -> dict[str, str]:
    """The AWS environment a client of ``endpoint`` needs (endpoint, test keys, region)."""
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": TEST_KEYS[0],
            "AWS_SECRET_ACCESS_KEY": TEST_KEYS[1], "AWS_DEFAULT_REGION": REGION}


@contextlib.contextmanager
def moto_env(endpoint: str) -> Iterator[dict[str, str]]:
    """Point the usual AWS environment variables at ``endpoint`` for the block (restored
    after it); yields the variables set."""
    variables = moto_variables(endpoint)
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield variables
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def create_bucket(endpoint: str, bucket: str) -> None:
    """Create ``bucket`` on the server with boto3 (the dev extra has it)."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION,
                          aws_access_key_id=TEST_KEYS[0], aws_secret_access_key=TEST_KEYS[1])
    try:
        client.create_bucket(Bucket=bucket)
    finally:
        client.close()

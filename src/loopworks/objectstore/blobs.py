"""Where the object store keeps object bodies: files under the home, or an S3 bucket.

The object store keeps keys, sizes and ETags in the metadata database and each body as a
*blob*, named by a random id and never changed once written. :class:`Blobs` is the little
that the store needs of a place for them: take a finished staging file, read a byte range,
copy, join multipart parts, remove. :class:`LocalBlobs` keeps them as files under
``<home>/s3/blobs`` (the default); :class:`S3Blobs` in a bucket of a real S3 service (AWS,
MinIO, any S3-compatible server), through boto3, with joins done server-side
(UploadPartCopy). Bodies are always staged on local disk first, where they are hashed.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from loopworks.errors import ConfigurationError, MissingDependencyError

__all__ = ["Blobs", "LocalBlobs", "S3Blobs", "open_blobs"]

#: The blob of an object in a mount: its file's path (always local).
MOUNTED = "file:"


class Blobs(Protocol):
    """A place for immutable object bodies, each named by a blob id."""

    def adopt(self, staged: Path) -> str:
        """Take a finished staging file (it is moved or uploaded, then gone); its blob id."""

    def read(self, blob: str, start: int, end: int, chunk: int) -> Iterator[bytes]:
        """Bytes ``start`` to ``end`` (inclusive), in chunks."""

    def copy(self, blob: str) -> str:
        """A new blob with the same bytes."""

    def join(self, blobs: Sequence[str]) -> str:
        """A new blob: the given ones end to end (multipart completion)."""

    def remove(self, blobs: Sequence[str]) -> None:
        """Remove blobs (missing ones are fine)."""

    def describe(self) -> str:
        """Where the blobs are, for messages."""


def _new_id() -> str:
    return secrets.token_hex(16)


class LocalBlobs:
    """Blobs as files under a folder (``<home>/s3/blobs/<xx>/<id>``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, blob: str) -> Path:
        """The file of a blob (or of a mounted object)."""
        if blob.startswith(MOUNTED):
            return Path(blob[len(MOUNTED):])
        return self.root / blob[:2] / blob

    def adopt(self, staged: Path) -> str:
        blob = _new_id()
        target = self.path(blob)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, target)
        return blob

    def read(self, blob: str, start: int, end: int, chunk: int) -> Iterator[bytes]:
        return read_file(self.path(blob), start, end, chunk)

    def copy(self, blob: str) -> str:
        new = _new_id()
        target = self.path(new)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.path(blob), target)
        return new

    def join(self, blobs: Sequence[str]) -> str:
        new = _new_id()
        target = self.path(new)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as out:
            for blob in blobs:
                with open(self.path(blob), "rb") as part:
                    size, done = os.fstat(part.fileno()).st_size, 0
                    while done < size:  # in the kernel, no copy through Python
                        done += os.copy_file_range(part.fileno(), out.fileno(), size - done)
            out.flush()
            os.fsync(out.fileno())
        return new

    def remove(self, blobs: Sequence[str]) -> None:
        for blob in blobs:
            if not blob.startswith(MOUNTED):
                self.path(blob).unlink(missing_ok=True)

    def describe(self) -> str:
        return str(self.root)


def read_file(path: Path, start: int, end: int, chunk: int) -> Iterator[bytes]:
    """Bytes ``start`` to ``end`` (inclusive) of a file, in chunks."""
    with open(path, "rb") as fh:
        fh.seek(start)
        left = end - start + 1
        while left > 0:
            data = fh.read(min(chunk, left))
            if not data:
                break
            left -= len(data)
            yield data


class S3Blobs:
    """Blobs as objects under ``s3://BUCKET/PREFIX/`` of an S3 service, through boto3.

    Credentials and region come from boto3's usual sources (environment, profile, instance
    role); ``endpoint_url`` names a service other than AWS (MinIO, another S3 server).
    """

    def __init__(self, url: str, *, endpoint_url: str | None = None) -> None:
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise MissingDependencyError("boto3", "s3", "an object store on S3") from None
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ConfigurationError(f"object_store_url {url!r} is not s3://BUCKET[/PREFIX]",
                                     setting="LOOPWORKS_OBJECT_STORE_URL")
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self.url = url
        self.client: Any = boto3.client("s3", endpoint_url=endpoint_url or None,
                                        config=Config(retries={"mode": "standard"}))

    def key(self, blob: str) -> str:
        """The key of a blob in the bucket."""
        return f"{self.prefix}/blobs/{blob[:2]}/{blob}" if self.prefix else \
            f"blobs/{blob[:2]}/{blob}"

    def adopt(self, staged: Path) -> str:
        blob = _new_id()
        self.client.upload_file(str(staged), self.bucket, self.key(blob))
        staged.unlink(missing_ok=True)
        return blob

    def read(self, blob: str, start: int, end: int, chunk: int) -> Iterator[bytes]:
        if blob.startswith(MOUNTED):
            yield from read_file(Path(blob[len(MOUNTED):]), start, end, chunk)
            return
        body = self.client.get_object(Bucket=self.bucket, Key=self.key(blob),
                                      Range=f"bytes={start}-{end}")["Body"]
        try:
            yield from body.iter_chunks(chunk)
        finally:
            body.close()

    def copy(self, blob: str) -> str:
        new = _new_id()
        if blob.startswith(MOUNTED):
            self.client.upload_file(blob[len(MOUNTED):], self.bucket, self.key(new))
        else:
            self.client.copy({"Bucket": self.bucket, "Key": self.key(blob)}, self.bucket,
                             self.key(new))
        return new

    def join(self, blobs: Sequence[str]) -> str:
        """Server-side: a multipart upload whose parts are copies of the blobs (S3's rules
        for parts are the object store's own, so every part but the last is 5 MiB or more)."""
        new = _new_id()
        key = self.key(new)
        upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
        try:
            parts = []
            for number, blob in enumerate(blobs, start=1):
                copied = self.client.upload_part_copy(
                    Bucket=self.bucket, Key=key, UploadId=upload, PartNumber=number,
                    CopySource={"Bucket": self.bucket, "Key": self.key(blob)})
                parts.append({"PartNumber": number, "ETag": copied["CopyPartResult"]["ETag"]})
            self.client.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload,
                                                  MultipartUpload={"Parts": parts})
        except BaseException:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload)
            raise
        return new

    def remove(self, blobs: Sequence[str]) -> None:
        keys = [{"Key": self.key(b)} for b in blobs if not b.startswith(MOUNTED)]
        for start in range(0, len(keys), 1000):
            self.client.delete_objects(Bucket=self.bucket,
                                       Delete={"Objects": keys[start:start + 1000],
                                               "Quiet": True})

    def describe(self) -> str:
        return self.url


def open_blobs(home_s3: Path, url: str = "", endpoint_url: str = "") -> Blobs:
    """The blob place a home's settings name: ``object_store_url`` empty (files under
    ``<home>/s3/blobs``), a folder, or ``s3://BUCKET/PREFIX``."""
    if not url:
        return LocalBlobs(home_s3 / "blobs")
    if url.startswith("s3://"):
        return S3Blobs(url, endpoint_url=endpoint_url or None)
    if "://" in url and not url.startswith("file://"):
        raise ConfigurationError(f"object_store_url {url!r}: use a folder or s3://BUCKET/PREFIX",
                                 setting="LOOPWORKS_OBJECT_STORE_URL")
    return LocalBlobs(Path(url.removeprefix("file://")).expanduser() / "blobs")

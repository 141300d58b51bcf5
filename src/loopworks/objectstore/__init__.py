"""loopworks' object store: buckets and objects, as S3 keeps them.

What the S3 endpoint (``/aws``) serves, and where ``s3://`` URIs given to loopworks resolve.
An object's bytes are a file under ``<home>/s3/blobs/`` named by a random id; its key, size,
ETag, content type and user metadata are a row in the metadata database, so listing by
prefix is an ordered range read, and replacing an object is one row update: a reader sees
the old object or the new one, never a part. A new body is written (and fsynced) under
``<home>/s3/staging/`` first and moved into place before its row commits; the file an
update replaced is removed after the commit. Multipart uploads keep each part as a file
until they complete into one object (ETag: MD5 of the parts' MD5s, ``-N``), as S3 does.

A *mount* serves a bucket prefix from a folder loopworks writes itself, read-only: a feature
group's Delta table at the S3 URI its OfflineStoreConfig names. Its files are listed, headed
and read in place (so any S3 client, delta-rs included, reads the table where SageMaker would
put it); writes and deletes under it are refused.
"""

from __future__ import annotations

import bisect
import builtins
import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from loopworks.clock import utcnow
from loopworks.errors import ConflictError, NotFoundError, PermissionDenied, ValidationError
from loopworks.metadata.tables import s3_buckets, s3_mounts, s3_objects, s3_parts, s3_uploads
from loopworks.objectstore.blobs import MOUNTED, Blobs, LocalBlobs, read_file

__all__ = ["BUCKET_PATTERN", "Listing", "Mount", "ObjectInfo", "ObjectStore", "Staged"]

#: S3's bucket names: 3-63 lower-case letters, digits, '.' and '-', a letter or digit at
#: each end.
BUCKET_PATTERN = re.compile(r"^(?=.{3,63}$)[a-z0-9][a-z0-9.-]*[a-z0-9]$")
_MAX_KEY_BYTES = 1024
_LIST_PAGE = 1000


@dataclass(frozen=True)
class ObjectInfo:
    """An object's key, size, ETag (quoted, as S3 sends it), type, metadata and time."""

    bucket: str
    key: str
    size: int
    etag: str
    content_type: str
    metadata: dict[str, str]
    modified_at: datetime
    blob: str


@dataclass(frozen=True)
class Listing:
    """One page of a bucket listing."""

    objects: list[ObjectInfo]
    common_prefixes: list[str]
    truncated: bool
    next_after: str | None


@dataclass(frozen=True)
class Mount:
    """A bucket prefix (ending in ``/``) served read-only from a folder."""

    bucket: str
    prefix: str
    directory: Path
    label: str

    def path(self, key: str) -> Path | None:
        """The file under the folder that ``key`` names, if it stays inside it."""
        relative = key[len(self.prefix):]
        if not relative or relative.startswith("/") or any(
                part in ("", ".", "..") for part in relative.split("/")):
            return None
        return self.directory / relative


@dataclass
class Staged:
    """A body written to the staging area, with what was computed while writing it."""

    path: Path
    size: int = 0
    md5: str = ""
    sha256: str = ""


class ObjectStore:
    """Buckets and objects of one home.

    Args:
        engine: The metadata database.
        root: The home's object-store folder (``<home>/s3``): bodies are staged here.
        blobs: Where bodies are kept (default: files under ``root/blobs``).
    """

    def __init__(self, engine: sa.Engine, root: Path, blobs: Blobs | None = None) -> None:
        self.engine = engine
        self.root = root
        self.blobs: Blobs = blobs if blobs is not None else LocalBlobs(root / "blobs")

    # ---------------------------------------------------------------- buckets
    def create_bucket(self, name: str, owner_id: int | None = None) -> None:
        """Create a bucket.

        Raises:
            ValidationError: Not a valid bucket name.
            ConflictError: It exists already.
        """
        if not BUCKET_PATTERN.match(name) or ".." in name:
            raise ValidationError(f"The specified bucket is not valid: {name!r} (3-63 lower-case "
                                  "letters, digits, '.' and '-')", code="InvalidBucketName")
        try:
            with self.engine.begin() as conn:
                conn.execute(s3_buckets.insert().values(name=name, owner_id=owner_id,
                                                        created_at=utcnow()))
        except sa.exc.IntegrityError:
            raise ConflictError("Your previous request to create the named bucket succeeded "
                                "and you already own it.",
                                code="BucketAlreadyOwnedByYou") from None

    def buckets(self) -> builtins.list[tuple[str, datetime]]:
        """Every bucket with its creation time, by name."""
        with self.engine.connect() as conn:
            return [(r.name, r.created_at) for r in conn.execute(
                sa.select(s3_buckets.c.name, s3_buckets.c.created_at)
                .order_by(s3_buckets.c.name))]

    def head_bucket(self, name: str) -> None:
        """Raises NotFoundError (NoSuchBucket) unless the bucket exists."""
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(s3_buckets.c.name).where(
                s3_buckets.c.name == name)).first()
        if found is None:
            raise NotFoundError("The specified bucket does not exist", code="NoSuchBucket",
                                bucket=name)

    def delete_bucket(self, name: str) -> None:
        """Delete an empty bucket (ConflictError BucketNotEmpty otherwise)."""
        self.head_bucket(name)
        with self.engine.begin() as conn:
            if conn.execute(sa.select(s3_objects.c.key).where(
                    s3_objects.c.bucket == name).limit(1)).first() is not None \
                    or conn.execute(sa.select(s3_mounts.c.prefix).where(
                        s3_mounts.c.bucket == name).limit(1)).first() is not None:
                raise ConflictError("The bucket you tried to delete is not empty",
                                    code="BucketNotEmpty", bucket=name)
            blobs = [r.blob for r in conn.execute(
                sa.select(s3_parts.c.blob).join(s3_uploads,
                                                s3_uploads.c.upload_id == s3_parts.c.upload_id)
                .where(s3_uploads.c.bucket == name))]
            conn.execute(s3_buckets.delete().where(s3_buckets.c.name == name))
        self._remove(blobs)

    # ------------------------------------------------------------------ bodies
    def staging(self) -> Staged:
        """A new file to write a body into (then :meth:`put` or :meth:`put_part`)."""
        folder = self.root / "staging"
        folder.mkdir(parents=True, exist_ok=True)
        return Staged(folder / f"{secrets.token_hex(16)}.part")

    def _adopt(self, staged: Staged) -> str:
        try:
            return self.blobs.adopt(staged.path)
        finally:
            staged.path.unlink(missing_ok=True)

    def _remove(self, blobs: Sequence[str]) -> None:
        self.blobs.remove(blobs)

    @staticmethod
    def check_key(key: str) -> None:
        """Raises ValidationError (KeyTooLongError) for an empty or too long key."""
        if not key or len(key.encode("utf-8")) > _MAX_KEY_BYTES:
            raise ValidationError("Your key is too long (at most 1024 bytes) or empty",
                                  code="KeyTooLongError")

    # ----------------------------------------------------------------- objects
    def put(self, bucket: str, key: str, staged: Staged, *, content_type: str = "",
            metadata: dict[str, str] | None = None, etag: str | None = None) -> ObjectInfo:
        """Make a staged body the object at ``key`` (replacing any)."""
        self.check_key(key)
        self.head_bucket(bucket)
        self.check_writable(bucket, key)
        blob = self._adopt(staged)
        return self._commit(bucket, key, blob, staged.size, etag or f'"{staged.md5}"',
                            content_type, metadata)

    def put_bytes(self, bucket: str, key: str, data: bytes, *,
                  content_type: str = "application/octet-stream") -> ObjectInfo:
        """Store a small body written by loopworks itself (an output document)."""
        staged = self.staging()
        try:
            with open(staged.path, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            staged.path.unlink(missing_ok=True)
            raise
        staged.size = len(data)
        staged.md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        return self.put(bucket, key, staged, content_type=content_type)

    def put_file(self, bucket: str, key: str, path: Path, *,
                 content_type: str = "binary/octet-stream") -> ObjectInfo:
        """Store a file's bytes as an object (a processing job's output), streamed."""
        staged = self.staging()
        md5 = hashlib.md5(usedforsecurity=False)
        try:
            with open(path, "rb") as source, open(staged.path, "wb") as out:
                while chunk := source.read(1 << 20):
                    md5.update(chunk)
                    out.write(chunk)
                    staged.size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            staged.path.unlink(missing_ok=True)
            raise
        staged.md5 = md5.hexdigest()
        return self.put(bucket, key, staged, content_type=content_type)

    def _commit(self, bucket: str, key: str, blob: str, size: int, etag: str,
                content_type: str, metadata: dict[str, str] | None) -> ObjectInfo:
        """Point ``key`` at a stored blob in one row write; the blob it replaced goes."""
        row = {"bucket": bucket, "key": key, "blob": blob, "size": size, "etag": etag,
               "content_type": content_type or "binary/octet-stream",
               "user_metadata": json.dumps(metadata or {}), "modified_at": utcnow()}
        try:
            with self.engine.begin() as conn:
                old = conn.execute(sa.select(s3_objects.c.blob).where(
                    s3_objects.c.bucket == bucket, s3_objects.c.key == key)).scalar()
                if old is None:
                    conn.execute(s3_objects.insert().values(**row))
                else:
                    conn.execute(s3_objects.update().where(
                        s3_objects.c.bucket == bucket, s3_objects.c.key == key).values(**row))
        except BaseException:
            self._remove([blob])
            raise
        if old is not None:
            self._remove([old])
        return self._info(row)

    @staticmethod
    def _info(row: Any) -> ObjectInfo:
        values: dict[str, Any] = dict(row) if isinstance(row, dict) else dict(row._mapping)
        return ObjectInfo(values["bucket"], values["key"], int(values["size"]),
                          values["etag"], values["content_type"],
                          json.loads(values["user_metadata"] or "{}"), values["modified_at"],
                          values["blob"])

    def head(self, bucket: str, key: str) -> ObjectInfo:
        """An object's description (NotFoundError NoSuchKey when missing)."""
        self.head_bucket(bucket)
        mount = self._mount_of(bucket, key)
        if mount is not None:
            info = self._mounted_info(mount, key)
            if info is None:
                raise NotFoundError("The specified key does not exist.", code="NoSuchKey",
                                    bucket=bucket, key=key)
            return info
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(s3_objects).where(
                s3_objects.c.bucket == bucket, s3_objects.c.key == key)).first()
        if row is None:
            raise NotFoundError("The specified key does not exist.", code="NoSuchKey",
                                bucket=bucket, key=key)
        return self._info(row)

    def read(self, info: ObjectInfo, start: int = 0, end: int | None = None,
             chunk: int = 1 << 20) -> Iterator[bytes]:
        """An object's bytes from ``start`` to ``end`` (inclusive), in chunks."""
        last = info.size - 1 if end is None else min(end, info.size - 1)
        if last < start:
            return iter(())
        if info.blob.startswith(MOUNTED):
            return read_file(Path(info.blob[len(MOUNTED):]), start, last, chunk)
        return self.blobs.read(info.blob, start, last, chunk)

    def delete(self, bucket: str, key: str) -> None:
        """Delete an object (nothing happens when it does not exist, as in S3)."""
        self.head_bucket(bucket)
        self.check_writable(bucket, key)
        with self.engine.begin() as conn:
            blob = conn.execute(sa.select(s3_objects.c.blob).where(
                s3_objects.c.bucket == bucket, s3_objects.c.key == key)).scalar()
            if blob is not None:
                conn.execute(s3_objects.delete().where(s3_objects.c.bucket == bucket,
                                                       s3_objects.c.key == key))
        if blob is not None:
            self._remove([blob])

    def copy(self, source: ObjectInfo, bucket: str, key: str, *,
             metadata: dict[str, str] | None = None, content_type: str | None = None
             ) -> ObjectInfo:
        """Copy an object (its metadata kept unless replaced)."""
        self.check_key(key)
        self.head_bucket(bucket)
        self.check_writable(bucket, key)
        blob = self.blobs.copy(source.blob)
        return self._commit(bucket, key, blob, source.size, source.etag,
                            content_type if content_type is not None else source.content_type,
                            source.metadata if metadata is None else metadata)

    def list(self, bucket: str, *, prefix: str = "", delimiter: str = "", after: str = "",
             max_keys: int = 1000) -> Listing:
        """Keys in UTF-8 byte order, after ``after``, under ``prefix``; with a
        ``delimiter``, keys sharing the next part of their name roll up into one common
        prefix. At most ``max_keys`` entries (objects plus prefixes); ``next_after`` is the
        last one given, to resume after."""
        self.head_bucket(bucket)
        objects: builtins.list[ObjectInfo] = []
        prefixes: builtins.list[str] = []
        last = ""
        if after > prefix:
            rolled = delimiter and after.endswith(delimiter) and after.startswith(prefix)
            lower, strict = (after + "\U0010ffff" if rolled else after), True
        else:
            lower, strict = prefix, False
        mounted = self._mounted_objects(bucket, prefix)
        mounted_keys = [info.key for info in mounted]
        while True:
            with self.engine.connect() as conn:
                query = sa.select(s3_objects).where(
                    s3_objects.c.bucket == bucket,
                    s3_objects.c.key > lower if strict else s3_objects.c.key >= lower)
                rows = conn.execute(query.order_by(s3_objects.c.key).limit(_LIST_PAGE)).all()
            # Files of mounts in the same key range, merged in key order.
            low = (bisect.bisect_right if strict else bisect.bisect_left)(mounted_keys, lower)
            high = bisect.bisect_right(mounted_keys, rows[-1].key) \
                if len(rows) == _LIST_PAGE else len(mounted_keys)
            entries: builtins.list[Any] = sorted([*rows, *mounted[low:high]], key=lambda e: e.key)
            for row in entries:
                key = row.key
                if not key.startswith(prefix):
                    return Listing(objects, prefixes, False, None)
                common = None
                if delimiter:
                    cut = key.find(delimiter, len(prefix))
                    if cut >= 0:
                        common = key[:cut + len(delimiter)]
                if common is not None and prefixes and prefixes[-1] == common:
                    continue
                if len(objects) + len(prefixes) >= max_keys:
                    return Listing(objects, prefixes, True, last)
                if common is not None:
                    prefixes.append(common)
                    last = common
                else:
                    objects.append(row if isinstance(row, ObjectInfo) else self._info(row))
                    last = key
            if len(rows) < _LIST_PAGE:
                return Listing(objects, prefixes, False, None)
            lower, strict = rows[-1].key, True
            if prefixes and lower.startswith(prefixes[-1]):
                lower = prefixes[-1] + "\U0010ffff"  # skip the rest of what rolled up

    # ------------------------------------------------------------------ mounts
    def mount(self, bucket: str, prefix: str, directory: Path, label: str) -> Mount:
        """Serve ``s3://bucket/prefix/`` read-only from ``directory`` (kept as given; it may
        not exist yet). Replaces a mount at the same prefix."""
        self.head_bucket(bucket)
        prefix = prefix.strip("/") + "/"
        self.check_key(prefix)
        row = {"bucket": bucket, "prefix": prefix, "directory": str(directory),
               "label": label, "created_at": utcnow()}
        with self.engine.begin() as conn:
            conn.execute(s3_mounts.delete().where(s3_mounts.c.bucket == bucket,
                                                  s3_mounts.c.prefix == prefix))
            conn.execute(s3_mounts.insert().values(**row))
        return Mount(bucket, prefix, Path(directory), label)

    def unmount(self, bucket: str, prefix: str) -> None:
        """Stop serving a mount (its folder is left as it is)."""
        with self.engine.begin() as conn:
            conn.execute(s3_mounts.delete().where(s3_mounts.c.bucket == bucket,
                                                  s3_mounts.c.prefix == prefix.strip("/") + "/"))

    def mounts(self, bucket: str) -> builtins.list[Mount]:
        """The bucket's mounts, by prefix."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(s3_mounts).where(s3_mounts.c.bucket == bucket)
                                .order_by(s3_mounts.c.prefix)).all()
        return [Mount(r.bucket, r.prefix, Path(r.directory), r.label) for r in rows]

    def _mount_of(self, bucket: str, key: str) -> Mount | None:
        return next((m for m in self.mounts(bucket) if key.startswith(m.prefix)), None)

    def check_writable(self, bucket: str, key: str) -> None:
        """Raises PermissionDenied (AccessDenied) for a key inside a mount."""
        mount = self._mount_of(bucket, key)
        if mount is not None:
            raise PermissionDenied(f"s3://{bucket}/{mount.prefix} holds {mount.label}, which "
                                   "loopworks writes; it is read-only over S3",
                                   bucket=bucket, key=key)

    @staticmethod
    def _file_info(mount: Mount, key: str, path: Path, stat: os.stat_result) -> ObjectInfo:
        # Not an MD5 of the bytes (that would mean reading every file to list a table): a
        # hash of the file's identity, with "-1" so clients do not take it for one.
        tag = hashlib.md5(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode(),
                          usedforsecurity=False).hexdigest()
        return ObjectInfo(mount.bucket, key, stat.st_size, f'"{tag}-1"',
                          "application/octet-stream", {},
                          datetime.fromtimestamp(stat.st_mtime, UTC), MOUNTED + str(path))

    def _mounted_info(self, mount: Mount, key: str) -> ObjectInfo | None:
        path = mount.path(key)
        if path is None or path.is_symlink():
            return None
        try:
            stat = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not os.path.isfile(path):
            return None
        return self._file_info(mount, key, path, stat)

    def _mounted_objects(self, bucket: str, prefix: str) -> builtins.list[ObjectInfo]:
        """Every file of the bucket's mounts whose key starts with ``prefix``, by key."""
        found: builtins.list[ObjectInfo] = []
        for mount in self.mounts(bucket):
            if not (mount.prefix.startswith(prefix) or prefix.startswith(mount.prefix)):
                continue
            for folder, dirs, files in os.walk(mount.directory):
                dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]
                for name in files:
                    path = Path(folder) / name
                    key = mount.prefix + path.relative_to(mount.directory).as_posix()
                    if key.startswith(prefix) and not path.is_symlink():
                        try:
                            found.append(self._file_info(mount, key, path, path.stat()))
                        except FileNotFoundError:  # removed while listing (a vacuum)
                            continue
        found.sort(key=lambda info: info.key)
        return found

    # ------------------------------------------------------------- multipart
    def create_upload(self, bucket: str, key: str, *, content_type: str = "",
                      metadata: dict[str, str] | None = None) -> str:
        """Start a multipart upload; returns its id."""
        self.check_key(key)
        self.head_bucket(bucket)
        self.check_writable(bucket, key)
        upload_id = secrets.token_hex(24)
        with self.engine.begin() as conn:
            conn.execute(s3_uploads.insert().values(
                upload_id=upload_id, bucket=bucket, key=key,
                content_type=content_type or "binary/octet-stream",
                user_metadata=json.dumps(metadata or {}), created_at=utcnow()))
        return upload_id

    def _upload(self, conn: sa.Connection, bucket: str, key: str, upload_id: str) -> Any:
        row = conn.execute(sa.select(s3_uploads).where(
            s3_uploads.c.upload_id == upload_id, s3_uploads.c.bucket == bucket,
            s3_uploads.c.key == key)).first()
        if row is None:
            raise NotFoundError("The specified upload does not exist. The upload ID may be "
                                "invalid, or the upload may have been aborted or completed.",
                                code="NoSuchUpload", upload_id=upload_id)
        return row

    def put_part(self, bucket: str, key: str, upload_id: str, number: int,
                 staged: Staged) -> str:
        """Keep one part of an upload (replacing an earlier one of the same number);
        returns its ETag."""
        if not 1 <= number <= 10000:
            raise ValidationError("Part number must be an integer between 1 and 10000",
                                  code="InvalidArgument")
        blob = self._adopt(staged)
        etag = f'"{staged.md5}"'
        try:
            with self.engine.begin() as conn:
                self._upload(conn, bucket, key, upload_id)
                old = conn.execute(sa.select(s3_parts.c.blob).where(
                    s3_parts.c.upload_id == upload_id, s3_parts.c.part_number == number)
                ).scalar()
                conn.execute(s3_parts.delete().where(s3_parts.c.upload_id == upload_id,
                                                     s3_parts.c.part_number == number))
                conn.execute(s3_parts.insert().values(upload_id=upload_id, part_number=number,
                                                      blob=blob, size=staged.size, etag=etag))
        except BaseException:
            self._remove([blob])
            raise
        if old is not None:
            self._remove([old])
        return etag

    def complete_upload(self, bucket: str, key: str, upload_id: str,
                        parts: Sequence[tuple[int, str]]) -> ObjectInfo:
        """Join the named parts, in order, into the object (S3's rules: ascending part
        numbers, ETags that match, every part but the last at least 5 MiB)."""
        with self.engine.connect() as conn:
            upload = self._upload(conn, bucket, key, upload_id)
            stored = {r.part_number: r for r in conn.execute(sa.select(s3_parts).where(
                s3_parts.c.upload_id == upload_id))}
        numbers = [n for n, _ in parts]
        if not parts or numbers != sorted(set(numbers)):
            raise ValidationError("The list of parts was not in ascending order.",
                                  code="InvalidPartOrder")
        chosen = []
        for number, etag in parts:
            row = stored.get(number)
            if row is None or row.etag.strip('"') != etag.strip('"'):
                raise ValidationError("One or more of the specified parts could not be found. "
                                      "The part may not have been uploaded, or the specified "
                                      "entity tag may not match the part's entity tag.",
                                      code="InvalidPart")
            chosen.append(row)
        for row in chosen[:-1]:
            if row.size < 5 << 20:
                raise ValidationError("Your proposed upload is smaller than the minimum "
                                      "allowed object size.", code="EntityTooSmall")
        digests = hashlib.md5(usedforsecurity=False)
        for row in chosen:
            digests.update(bytes.fromhex(row.etag.strip('"')))
        self.check_writable(bucket, key)
        blob = self.blobs.join([row.blob for row in chosen])
        info = self._commit(bucket, key, blob, sum(row.size for row in chosen),
                            f'"{digests.hexdigest()}-{len(chosen)}"', upload.content_type,
                            json.loads(upload.user_metadata))
        self.abort_upload(bucket, key, upload_id)
        return info

    def abort_upload(self, bucket: str, key: str, upload_id: str) -> None:
        """Drop an upload and its parts."""
        with self.engine.begin() as conn:
            self._upload(conn, bucket, key, upload_id)
            blobs = [r.blob for r in conn.execute(sa.select(s3_parts.c.blob).where(
                s3_parts.c.upload_id == upload_id))]
            conn.execute(s3_uploads.delete().where(s3_uploads.c.upload_id == upload_id))
        self._remove(blobs)

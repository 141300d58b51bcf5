"""S3 over the wire (REST, XML, path-style addressing), on loopworks' object store.

``boto3.client("s3")`` pointed at ``/aws`` creates, lists and deletes buckets; puts, gets
(with ``Range``), heads, copies and deletes objects (one or many); lists them with
ListObjectsV2 (prefix, delimiter, continuation, ``encoding-type=url``); and uploads large
files in parts (what ``upload_file`` does above 8 MB). Bodies stream to disk, never into
memory, as sent or aws-chunked (:mod:`.chunked`: boto3 over HTTPS, the other SDKs' signed
chunks), with their checksums (Content-MD5, CRC32, SHA-256) checked from headers or trailer;
a body that is not the one declared is refused and nothing is written. Errors are S3's XML
with its codes. Only admins may use S3 (it holds feature data and job outputs).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import itertools
import logging
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl, quote, unquote
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from loopworks.errors import ConflictError, NotFoundError, PermissionDenied, ValidationError
from loopworks.labeling.workforce import Role, Worker
from loopworks.objectstore import ObjectInfo, ObjectStore, Staged
from loopworks.server.aws.chunked import STREAMING_FORMS, AwsChunkedDecoder
from loopworks.server.aws.protocols import AwsError
from loopworks.server.aws.sigv4 import ChunkChain

log = logging.getLogger(__name__)

__all__ = ["S3_NS", "Payload", "handle", "s3_error"]

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
_XML = "application/xml"
_MAX_XML = 1 << 20
_BLOCK = 1 << 20
_STATUS = {"NoSuchBucket": 404, "NoSuchKey": 404, "NoSuchUpload": 404,
           "BucketAlreadyOwnedByYou": 409, "BucketNotEmpty": 409, "AccessDenied": 403,
           "InvalidRange": 416, "NotImplemented": 501}


def s3_error(code: str, message: str, status: int | None = None) -> AwsError:
    """An S3 error with its usual status."""
    return AwsError(code, message, status=status or _STATUS.get(code, 400))


def _from_domain(exc: Exception) -> AwsError:
    fields = getattr(exc, "fields", {})
    code = fields.get("code")
    if isinstance(exc, NotFoundError):
        return s3_error(code or "NoSuchKey", str(exc))
    if isinstance(exc, ConflictError):
        return s3_error(code or "OperationAborted", str(exc), 409)
    if isinstance(exc, PermissionDenied):
        return s3_error("AccessDenied", str(exc))
    return s3_error(code or "InvalidArgument", str(exc))


def _time(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _xml(body: str, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response('<?xml version="1.0" encoding="UTF-8"?>\n' + body, status_code=status,
                    media_type=_XML, headers=headers)


def _object_headers(info: ObjectInfo) -> dict[str, str]:
    headers = {"ETag": info.etag, "Last-Modified": format_datetime(info.modified_at,
                                                                   usegmt=True),
               "Content-Type": info.content_type, "Accept-Ranges": "bytes"}
    headers.update({f"x-amz-meta-{k}": v for k, v in info.metadata.items()})
    return headers


def _user_metadata(request: Request) -> dict[str, str]:
    return {k[len("x-amz-meta-"):]: v for k, v in request.headers.items()
            if k.lower().startswith("x-amz-meta-")}


@dataclass(frozen=True)
class Payload:
    """How a request declared its body: ``X-Amz-Content-SHA256`` as sent, and for a body in
    signed aws-chunked form, the signature chain its chunks continue."""

    declared: str | None
    chain: ChunkChain | None = None


def _decoder(request: Request, payload: Payload) -> AwsChunkedDecoder | None:
    declared = payload.declared
    if not declared or not declared.startswith("STREAMING-"):
        return None
    if declared not in STREAMING_FORMS:
        raise s3_error("NotImplemented", f"the payload form {declared} is not supported; "
                       f"this server takes {', '.join(sorted(STREAMING_FORMS))}, a body's "
                       "SHA-256, or UNSIGNED-PAYLOAD")
    signed = declared.startswith("STREAMING-AWS4-HMAC-SHA256")
    if signed and payload.chain is None:
        raise s3_error("InvalidRequest", "signed aws-chunked bodies need the Authorization "
                       "header's signature (they cannot be presigned)")
    length = request.headers.get("x-amz-decoded-content-length")
    if length is not None and not length.isdigit():
        raise s3_error("InvalidArgument", "x-amz-decoded-content-length must be a whole number")
    chain = copy.copy(payload.chain) if signed else None
    return AwsChunkedDecoder(chain, trailer=STREAMING_FORMS[declared],
                             decoded_length=int(length) if length is not None else None)


def _checksums(request: Request, decoder: AwsChunkedDecoder | None, md5: Any, sha: Any,
               crc: int) -> None:
    """Check what the client said the body's checksums are, in headers or in the trailer."""
    claimed = {k.lower(): v for k, v in request.headers.items()}
    if decoder is not None:
        claimed.update(decoder.trailers)
    content_md5 = claimed.get("content-md5")
    if content_md5 and base64.b64decode(content_md5) != md5.digest():
        raise s3_error("BadDigest", "The Content-MD5 you specified did not match what we "
                       "received.")
    for name, actual in (("crc32", crc.to_bytes(4, "big")), ("sha256", sha.digest())):
        value = claimed.get(f"x-amz-checksum-{name}")
        if value and base64.b64decode(value) != actual:
            raise s3_error("BadDigest", f"The {name.upper()} you specified did not match the "
                           "calculated checksum.")


async def _stream_to(store: ObjectStore, request: Request, payload: Payload) -> Staged:
    """Write the body to the staging area (decoding an aws-chunked one), hashing it; refuse
    it (and keep nothing) when it is not the body the client declared."""
    decoder = _decoder(request, payload)
    staged = store.staging()
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    crc = [0]

    def consume(block: bytes, out: Any) -> None:
        # Off the event loop, a megabyte at a time: hashlib and zlib let go of the GIL, so
        # the parts of a multipart upload hash and land on disk side by side.
        for piece in decoder.feed(block) if decoder is not None else (block,):
            sha.update(piece)
            md5.update(piece)
            crc[0] = zlib.crc32(piece, crc[0])
            out.write(piece)
            staged.size += len(piece)

    writing: asyncio.Future[None] | None = None
    try:
        with open(staged.path, "wb") as out:
            # Double-buffered: one block hashes and lands on disk while the next arrives.
            pending = bytearray()
            async for chunk in request.stream():
                pending += chunk
                if len(pending) >= _BLOCK:
                    if writing is not None:
                        await writing
                    writing = asyncio.ensure_future(
                        run_in_threadpool(consume, bytes(pending), out))
                    pending.clear()
            if writing is not None:
                await writing
            if pending:
                await run_in_threadpool(consume, bytes(pending), out)
            if decoder is not None:
                decoder.close()
            out.flush()
            await run_in_threadpool(os.fsync, out.fileno())
        staged.md5, staged.sha256 = md5.hexdigest(), sha.hexdigest()
        declared = payload.declared
        if declared and declared != "UNSIGNED-PAYLOAD" and decoder is None \
                and declared.lower() != staged.sha256:
            raise s3_error("XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' "
                           "header does not match what was computed.")
        _checksums(request, decoder, md5, sha, crc[0])
    except BaseException:
        if writing is not None and not writing.done():
            writing.cancel()
            await asyncio.gather(writing, return_exceptions=True)
        staged.path.unlink(missing_ok=True)
        raise
    return staged


async def _xml_body(request: Request) -> ElementTree.Element:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_XML:
            raise s3_error("MalformedXML", "The XML you provided is too large.")
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        raise s3_error("MalformedXML", "The XML you provided was not well-formed or did not "
                       "validate against our published schema.") from None
    for element in root.iter():  # namespaces off: S3 clients may or may not send one
        element.tag = element.tag.rsplit("}", 1)[-1]
    return root


def _first_chunk_read(store: ObjectStore, info: ObjectInfo, chunks: Iterator[bytes]
                      ) -> Iterator[bytes]:
    """``chunks`` with its first chunk read already, so that a body that cannot be read
    is an error before the response starts, not a 200 cut short.

    Raises:
        AwsError: InternalError naming where the body was looked for: a server whose
            ``object_store_url`` differs from the one that wrote the object (two machines
            keeping bodies on their own disks) meets this.
    """
    try:
        first = next(chunks, b"")
    except Exception as exc:
        log.warning("object s3://%s/%s: its body (blob %s) cannot be read from %s: %s",
                    info.bucket, info.key, info.blob, store.blobs.describe(), exc)
        raise AwsError("InternalError", f"the body of s3://{info.bucket}/{info.key} cannot "
                       f"be read from {store.blobs.describe()}; every server of one "
                       "deployment needs the same object_store_url (an s3:// one when "
                       "they run on several machines)", status=500) from None
    return itertools.chain((first,), chunks)


def _range(header: str | None, size: int) -> tuple[int, int] | None:
    if not header:
        return None
    found = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
    if found is None or found[1] == found[2] == "":
        raise s3_error("InvalidRange", "The requested range is not satisfiable")
    if found[1] == "":
        start, end = max(0, size - int(found[2])), size - 1
    else:
        start = int(found[1])
        end = min(int(found[2]), size - 1) if found[2] else size - 1
    if start >= size or start > end:
        raise s3_error("InvalidRange", "The requested range is not satisfiable")
    return start, end


def _encode(text: str, url: bool) -> str:
    return escape(quote(text, safe="/") if url else text)


def _token(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode()


def _untoken(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        raise s3_error("InvalidArgument", "The continuation token provided is incorrect") \
            from None


async def _list_objects(store: ObjectStore, bucket: str, query: dict[str, str]) -> Response:
    url = query.get("encoding-type") == "url"
    prefix, delimiter = query.get("prefix", ""), query.get("delimiter", "")
    try:
        max_keys = int(query.get("max-keys", "1000"))
    except ValueError:
        raise s3_error("InvalidArgument", "max-keys must be a whole number") from None
    max_keys = max(0, min(max_keys, 1000))
    token = query.get("continuation-token")
    after = _untoken(token) if token else query.get("start-after", "")
    listing = await run_in_threadpool(store.list, bucket, prefix=prefix, delimiter=delimiter,
                                      after=after, max_keys=max_keys)
    parts = [f"<Name>{escape(bucket)}</Name><Prefix>{_encode(prefix, url)}</Prefix>",
             f"<KeyCount>{len(listing.objects) + len(listing.common_prefixes)}</KeyCount>",
             f"<MaxKeys>{max_keys}</MaxKeys>",
             f"<IsTruncated>{'true' if listing.truncated else 'false'}</IsTruncated>"]
    if delimiter:
        parts.append(f"<Delimiter>{_encode(delimiter, url)}</Delimiter>")
    if url:
        parts.append("<EncodingType>url</EncodingType>")
    if token:
        parts.append(f"<ContinuationToken>{escape(token)}</ContinuationToken>")
    if query.get("start-after"):
        parts.append(f"<StartAfter>{_encode(query['start-after'], url)}</StartAfter>")
    if listing.truncated and listing.next_after is not None:
        parts.append(f"<NextContinuationToken>{_token(listing.next_after)}"
                     "</NextContinuationToken>")
    for info in listing.objects:
        parts.append(f"<Contents><Key>{_encode(info.key, url)}</Key><LastModified>"
                     f"{_time(info.modified_at)}</LastModified><ETag>{escape(info.etag)}</ETag>"
                     f"<Size>{info.size}</Size><StorageClass>STANDARD</StorageClass></Contents>")
    for common in listing.common_prefixes:
        parts.append(f"<CommonPrefixes><Prefix>{_encode(common, url)}</Prefix></CommonPrefixes>")
    return _xml(f'<ListBucketResult xmlns="{S3_NS}">{"".join(parts)}</ListBucketResult>')


def _split(path: str) -> tuple[str, str]:
    bucket, _, key = path.lstrip("/").partition("/")
    return bucket, key


async def handle(request: Request, store: ObjectStore, worker: Worker, path: str,
                 payload: Payload, account: str) -> Response:
    """Answer one S3 request (already authenticated) for ``path`` below the prefix."""
    if worker.role is not Role.ADMIN:
        raise s3_error("AccessDenied", f"worker {worker.name!r} ({worker.role.value}) may not "
                       "use S3 (admins only)")
    try:
        return await _dispatch(request, store, path, payload, account)
    except (NotFoundError, ConflictError, PermissionDenied, ValidationError) as exc:
        raise _from_domain(exc) from None


async def _dispatch(request: Request, store: ObjectStore, path: str, payload: Payload,
                    account: str) -> Response:
    method = request.method
    # A presigned URL's own parameters say who signed it, not what to do.
    query = {k: v for k, v in parse_qsl(request.url.query, keep_blank_values=True)
             if k not in ("AWSAccessKeyId", "Signature", "Expires")
             and not k.startswith("X-Amz-")}
    bucket, key = _split(path)
    if not bucket:
        if method != "GET":
            raise s3_error("NotImplemented", f"{method} / is not supported")
        buckets = await run_in_threadpool(store.buckets)
        items = "".join(f"<Bucket><Name>{escape(n)}</Name><CreationDate>{_time(t)}"
                        "</CreationDate></Bucket>" for n, t in buckets)
        return _xml(f'<ListAllMyBucketsResult xmlns="{S3_NS}"><Owner><ID>{account}</ID>'
                    f"<DisplayName>loopworks</DisplayName></Owner><Buckets>{items}</Buckets>"
                    "</ListAllMyBucketsResult>")
    if not key:
        return await _bucket(request, store, bucket, query, method)
    return await _object(request, store, bucket, key, query, method, payload)


async def _bucket(request: Request, store: ObjectStore, bucket: str, query: dict[str, str],
                  method: str) -> Response:
    if method == "PUT" and not query:
        await run_in_threadpool(store.create_bucket, bucket)
        return Response(status_code=200, headers={"Location": f"/{bucket}"})
    if method == "HEAD" and not query:
        await run_in_threadpool(store.head_bucket, bucket)
        return Response(status_code=200)
    if method == "DELETE" and not query:
        await run_in_threadpool(store.delete_bucket, bucket)
        return Response(status_code=204)
    if method == "GET" and "location" in query:
        await run_in_threadpool(store.head_bucket, bucket)
        return _xml(f'<LocationConstraint xmlns="{S3_NS}"></LocationConstraint>')
    if method == "GET" and query.get("list-type") == "2":
        return await _list_objects(store, bucket, query)
    if method == "POST" and "delete" in query:
        root = await _xml_body(request)
        quiet = (root.findtext("Quiet") or "").lower() == "true"
        deleted = []
        for item in root.findall("Object"):
            key = item.findtext("Key") or ""
            await run_in_threadpool(store.delete, bucket, key)
            deleted.append(key)
        body = "" if quiet else "".join(f"<Deleted><Key>{escape(k)}</Key></Deleted>"
                                        for k in deleted)
        return _xml(f'<DeleteResult xmlns="{S3_NS}">{body}</DeleteResult>')
    raise s3_error("NotImplemented", f"this bucket operation ({method} with "
                   f"{', '.join(sorted(query)) or 'no query'}) is not supported by this server")


async def _object(request: Request, store: ObjectStore, bucket: str, key: str,
                  query: dict[str, str], method: str, payload: Payload) -> Response:
    if method == "PUT" and "uploadId" in query:
        number = query.get("partNumber", "")
        if not number.isdigit():
            raise s3_error("InvalidArgument", "partNumber must be a whole number")
        staged = await _stream_to(store, request, payload)
        etag = await run_in_threadpool(store.put_part, bucket, key, query["uploadId"],
                                       int(number), staged)
        return Response(status_code=200, headers={"ETag": etag})
    if method == "PUT" and request.headers.get("x-amz-copy-source"):
        source = unquote(request.headers["x-amz-copy-source"].split("?", 1)[0]).lstrip("/")
        source_bucket, source_key = _split(source)
        info = await run_in_threadpool(store.head, source_bucket, source_key)
        replace = request.headers.get("x-amz-metadata-directive", "COPY") == "REPLACE"
        copied = await run_in_threadpool(
            lambda: store.copy(info, bucket, key,
                               metadata=_user_metadata(request) if replace else None,
                               content_type=request.headers.get("content-type")
                               if replace else None))
        return _xml(f'<CopyObjectResult xmlns="{S3_NS}"><LastModified>'
                    f"{_time(copied.modified_at)}</LastModified><ETag>{escape(copied.etag)}"
                    "</ETag></CopyObjectResult>")
    if method == "PUT" and not query:
        store.check_key(key)
        await run_in_threadpool(store.head_bucket, bucket)
        staged = await _stream_to(store, request, payload)
        info = await run_in_threadpool(
            lambda: store.put(bucket, key, staged,
                              content_type=request.headers.get("content-type", ""),
                              metadata=_user_metadata(request)))
        return Response(status_code=200, headers={"ETag": info.etag})
    if method in ("GET", "HEAD") and not (set(query) - {"partNumber", "response-content-type"}):
        info = await run_in_threadpool(store.head, bucket, key)
        headers = _object_headers(info)
        wanted = _range(request.headers.get("range"), info.size)
        start, end = wanted if wanted else (0, info.size - 1)
        length = max(0, end - start + 1)
        headers["Content-Length"] = str(length)
        status = 200
        if wanted:
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{info.size}"
        if method == "HEAD":
            return Response(status_code=status, headers=headers)
        chunks: Iterator[bytes] = store.read(info, start, end) if length else iter(())
        if length:
            chunks = await run_in_threadpool(_first_chunk_read, store, info, chunks)
        return StreamingResponse(chunks, status_code=status, headers=headers,
                                 media_type=info.content_type)
    if method == "DELETE" and "uploadId" in query:
        await run_in_threadpool(store.abort_upload, bucket, key, query["uploadId"])
        return Response(status_code=204)
    if method == "DELETE" and not query:
        await run_in_threadpool(store.delete, bucket, key)
        return Response(status_code=204)
    if method == "POST" and "uploads" in query:
        upload_id = await run_in_threadpool(
            lambda: store.create_upload(bucket, key,
                                        content_type=request.headers.get("content-type", ""),
                                        metadata=_user_metadata(request)))
        return _xml(f'<InitiateMultipartUploadResult xmlns="{S3_NS}"><Bucket>{escape(bucket)}'
                    f"</Bucket><Key>{escape(key)}</Key><UploadId>{upload_id}</UploadId>"
                    "</InitiateMultipartUploadResult>")
    if method == "POST" and "uploadId" in query:
        root = await _xml_body(request)
        parts: list[tuple[int, str]] = []
        for part in root.findall("Part"):
            number = part.findtext("PartNumber") or ""
            if not number.isdigit():
                raise s3_error("MalformedXML", "each Part needs a PartNumber")
            parts.append((int(number), part.findtext("ETag") or ""))
        info = await run_in_threadpool(store.complete_upload, bucket, key, query["uploadId"],
                                       parts)
        return _xml(f'<CompleteMultipartUploadResult xmlns="{S3_NS}"><Location>/{escape(bucket)}'
                    f"/{escape(key)}</Location><Bucket>{escape(bucket)}</Bucket><Key>"
                    f"{escape(key)}</Key><ETag>{escape(info.etag)}</ETag>"
                    "</CompleteMultipartUploadResult>")
    raise s3_error("NotImplemented", f"this object operation ({method} with "
                   f"{', '.join(sorted(query)) or 'no query'}) is not supported by this server")




"""AWS Signature Version 4, checked as AWS checks it.

A request signed by boto3 (or any AWS SDK) carries ``Authorization: AWS4-HMAC-SHA256
Credential=KEY/DATE/REGION/SERVICE/aws4_request, SignedHeaders=..., Signature=...`` and
``X-Amz-Date``. :func:`verify` rebuilds the canonical request from what arrived (method,
path, query, the signed headers, the payload hash), derives the signing key from the secret,
and compares signatures in constant time. It also checks the clock (15 minutes either way),
that the scope's date is the request's, that ``host`` is signed, and that a body whose hash
the client declared (``X-Amz-Content-SHA256``) is that body. ``UNSIGNED-PAYLOAD`` is taken as
declared; the streaming payload forms are checked where the body is read (S3).

Reference: AWS's "Create a signed AWS API request" (Signature Version 4) guide. Nothing here
knows about HTTP frameworks: the web layer hands in a :class:`SignedRequest`.
"""

from __future__ import annotations

import hashlib
import hmac
import posixpath
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from urllib.parse import quote, unquote

__all__ = ["ALGORITHM", "MAX_PRESIGNED_SECONDS", "MAX_SKEW", "SIGNED_CHUNKS", "UNSIGNED_PAYLOAD",
           "ChunkChain", "Credential", "Failure", "PresignedV2", "SignatureError",
           "SignedRequest", "parse_authorization", "presigned", "presigned_v2", "verify",
           "verify_v2"]

ALGORITHM = "AWS4-HMAC-SHA256"
#: How far a request's time may be from the server's, either way.
MAX_SKEW = timedelta(minutes=15)
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_STREAMING = ("STREAMING-",)
_AUTH = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+),\s*"
    r"SignedHeaders=(?P<headers>[^,\s]+),\s*Signature=(?P<signature>[0-9a-f]{64})\s*$")
_SCOPE = re.compile(r"(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[a-z0-9-]+)/"
                    r"(?P<service>[a-z0-9-]+)/aws4_request")


class Failure(Enum):
    """Why a request's authentication failed (each protocol names it its own way)."""

    MISSING = "missing"          # no Authorization header
    MALFORMED = "malformed"      # unreadable header, scope or date
    UNKNOWN_KEY = "unknown_key"  # no such access key (or revoked, or worker deactivated)
    MISMATCH = "mismatch"        # the signature is not the one the secret gives
    SKEWED = "skewed"            # the request's time is too far from the server's
    BODY = "body"                # the body is not the one whose hash was signed


class SignatureError(Exception):
    """A request whose authentication failed; ``failure`` says how."""

    def __init__(self, failure: Failure, message: str) -> None:
        super().__init__(message)
        self.failure = failure
        self.message = message

_STAMP = re.compile(r"\d{8}T\d{6}Z")


@dataclass(frozen=True)
class Credential:
    """What the Authorization header says: key, scope, signed headers, signature."""

    key_id: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


@dataclass(frozen=True)
class SignedRequest:
    """A request as it arrived: the path and query exactly as sent (still percent-encoded),
    headers with lower-case names (repeated names kept), and the body."""

    method: str
    raw_path: str
    raw_query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of a header, by lower-case name."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


def parse_authorization(value: str | None) -> Credential:
    """Read an ``Authorization`` header.

    Raises:
        SignatureError: MISSING without a header, MALFORMED when it cannot be read.
    """
    if not value:
        raise SignatureError(Failure.MISSING, "Request is missing Authentication Token")
    found = _AUTH.match(value.strip())
    if found is None:
        raise SignatureError(Failure.MALFORMED, "Authorization header requires "
                             "'Credential', 'SignedHeaders' and 'Signature' parameters "
                             f"and the {ALGORITHM} algorithm")
    scope = _SCOPE.fullmatch(found["credential"])
    if scope is None:
        raise SignatureError(Failure.MALFORMED, "Credential should be scoped to a valid "
                             "region, service and date: KEY/YYYYMMDD/REGION/SERVICE/"
                             "aws4_request")
    headers = tuple(found["headers"].split(";"))
    return Credential(scope["key"], scope["date"], scope["region"], scope["service"],
                      headers, found["signature"])


#: The longest a presigned URL may be valid: seven days, as AWS allows.
MAX_PRESIGNED_SECONDS = 7 * 24 * 3600


def presigned(request: SignedRequest, now: datetime | None = None
              ) -> tuple[SignedRequest, Credential] | None:
    """Read a presigned URL's query (``X-Amz-Algorithm``, ``-Credential``, ``-Date``,
    ``-Expires``, ``-SignedHeaders``, ``-Signature``): the request as signed (the query
    without its signature, the date as a header) and its credential; None when the URL is
    not presigned.

    Raises:
        SignatureError: MALFORMED when a part is missing or unreadable, SKEWED when the URL
            has expired.
    """
    pairs = [pair.partition("=") for pair in request.raw_query.split("&") if pair]
    values = {unquote(k): unquote(v) for k, _, v in pairs}
    if "X-Amz-Signature" not in values and "X-Amz-Algorithm" not in values:
        return None
    try:
        if values["X-Amz-Algorithm"] != ALGORITHM:
            raise KeyError("X-Amz-Algorithm")
        scope = _SCOPE.fullmatch(values["X-Amz-Credential"])
        expires = int(values["X-Amz-Expires"])
        signature = values["X-Amz-Signature"]
        stamp = values["X-Amz-Date"]
        headers = tuple(values["X-Amz-SignedHeaders"].split(";"))
    except (KeyError, ValueError):
        raise SignatureError(Failure.MALFORMED, "Query-string authentication requires the "
                             "X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, "
                             "X-Amz-SignedHeaders, and X-Amz-Expires parameters.") from None
    if scope is None or not re.fullmatch(r"[0-9a-fA-F]{64}", signature) \
            or not 1 <= expires <= MAX_PRESIGNED_SECONDS:
        raise SignatureError(Failure.MALFORMED, "X-Amz-Credential, X-Amz-Signature or "
                             "X-Amz-Expires is not valid")
    signed = SignedRequest(
        request.method, request.raw_path,
        "&".join(f"{k}={v}" for k, _, v in pairs if unquote(k) != "X-Amz-Signature"),
        (*request.headers, ("x-amz-date", stamp), ("x-amz-content-sha256", UNSIGNED_PAYLOAD)),
        request.body)
    signed_at = request_time(signed)
    if (now or datetime.now(UTC)) > signed_at + timedelta(seconds=expires):
        raise SignatureError(Failure.SKEWED, "Request has expired")
    return signed, Credential(scope["key"], scope["date"], scope["region"], scope["service"],
                              headers, signature)


def _canonical_path(raw_path: str, service: str) -> str:
    if service == "s3":  # S3 signs the path as sent: no normalising, no second encoding
        return raw_path or "/"
    path = posixpath.normpath(raw_path or "/")
    if raw_path.endswith("/") and path != "/":
        path += "/"
    path = "/" + path.lstrip("/")
    return quote(path, safe="/~")  # the path was encoded once by the client: twice here


def _canonical_query(raw_query: str) -> str:
    pairs = [pair.partition("=") for pair in raw_query.split("&") if pair]
    return "&".join(f"{key}={value}" for key, _, value in sorted((k, s, v) for k, s, v in pairs))


def canonical_request(request: SignedRequest, credential: Credential, payload_hash: str
                      ) -> str:
    """The canonical request of AWS's algorithm, from what arrived."""
    values: dict[str, list[str]] = {}
    for name, value in request.headers:
        values.setdefault(name, []).append(" ".join(value.split()))
    lines = [f"{name}:{','.join(values.get(name, []))}" for name in credential.signed_headers]
    return "\n".join([request.method.upper(), _canonical_path(request.raw_path,
                                                              credential.service),
                      _canonical_query(request.raw_query), "\n".join(lines) + "\n",
                      ";".join(credential.signed_headers), payload_hash])


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret: str, credential: Credential) -> bytes:
    """The key a scope's signatures are made with (date, region, service)."""
    key = _hmac(f"AWS4{secret}".encode(), credential.date)
    key = _hmac(key, credential.region)
    key = _hmac(key, credential.service)
    return _hmac(key, "aws4_request")


def request_time(request: SignedRequest) -> datetime:
    """The time the request says it was signed (``X-Amz-Date``).

    Raises:
        SignatureError: MALFORMED when missing or unreadable.
    """
    stamp = request.header("x-amz-date")
    try:
        if stamp is None or not _STAMP.fullmatch(stamp):
            raise ValueError
        # Sliced, not strptime'd: this runs for every request, and strptime is slow.
        return datetime(int(stamp[:4]), int(stamp[4:6]), int(stamp[6:8]), int(stamp[9:11]),
                        int(stamp[11:13]), int(stamp[13:15]), tzinfo=UTC)
    except ValueError:
        raise SignatureError(Failure.MALFORMED, "Authorization requires an X-Amz-Date header "
                             "in the form YYYYMMDDTHHMMSSZ") from None


def verify(request: SignedRequest, credential: Credential, secret: str, *,
           now: datetime | None = None, body_later: bool = False,
           check_clock: bool = True) -> str:
    """Check a request's signature; returns its payload hash as declared or computed.

    With ``body_later`` (S3 streams bodies to disk) the body is not at hand: the declared
    hash is signed as it stands, and the caller compares it with the body it streams.
    ``check_clock=False`` is for presigned URLs, whose expiry :func:`presigned` checked.

    Raises:
        SignatureError: How it failed (MALFORMED, SKEWED, BODY or MISMATCH).
    """
    signed_at = request_time(request)
    stamp = request.header("x-amz-date") or ""
    if credential.date != stamp[:8]:
        raise SignatureError(Failure.MALFORMED, f"Credential should be scoped to a valid "
                             f"date: {credential.date} is not the date of X-Amz-Date {stamp}")
    if "host" not in credential.signed_headers:
        raise SignatureError(Failure.MALFORMED, "'Host' must be a signed header")
    now = now or datetime.now(UTC)
    if check_clock and abs(now - signed_at) > MAX_SKEW:
        raise SignatureError(Failure.SKEWED, f"Signature expired: {stamp} is now earlier than "
                             f"{(now - MAX_SKEW):%Y%m%dT%H%M%SZ} ({now:%Y%m%dT%H%M%SZ} - 15 min.)"
                             if signed_at < now else
                             f"Signature not yet current: {stamp} is still later than "
                             f"{(now + MAX_SKEW):%Y%m%dT%H%M%SZ}")
    declared = request.header("x-amz-content-sha256")
    if body_later:
        if declared is None:
            raise SignatureError(Failure.MALFORMED, "Missing required header for this "
                                 "request: x-amz-content-sha256")
        actual = declared.lower()
    else:
        actual = hashlib.sha256(request.body).hexdigest()
    if declared is None:
        payload_hash = actual
    elif declared == UNSIGNED_PAYLOAD or declared.startswith(_STREAMING):
        payload_hash = declared
    elif declared.lower() != actual:
        raise SignatureError(Failure.BODY, "The provided 'x-amz-content-sha256' header does "
                             "not match what was computed.")
    else:
        payload_hash = declared
    canonical = canonical_request(request, credential, payload_hash)
    scope = f"{credential.date}/{credential.region}/{credential.service}/aws4_request"
    to_sign = "\n".join([ALGORITHM, stamp, scope,
                         hashlib.sha256(canonical.encode("utf-8")).hexdigest()])
    expected = hmac.new(signing_key(secret, credential), to_sign.encode("utf-8"),
                        hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, credential.signature):
        raise SignatureError(Failure.MISMATCH, "The request signature we calculated does not "
                             "match the signature you provided. Check your AWS Secret Access "
                             "Key and signing method.")
    return payload_hash


#: The payload hashes that announce an aws-chunked body whose chunks are signed.
SIGNED_CHUNKS = ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER")
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass
class ChunkChain:
    """The signatures of an aws-chunked body (``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``, with or
    without ``-TRAILER``): each chunk's signature signs its data's hash and the signature
    before it, starting from the request's own (the seed), so chunks cannot be changed,
    dropped or reordered. AWS's "Transferring payload in multiple chunks" guide."""

    key: bytes
    stamp: str
    scope: str
    previous: str

    @classmethod
    def seeded(cls, request: SignedRequest, credential: Credential, secret: str
               ) -> ChunkChain:
        """The chain of a request whose seed signature :func:`verify` accepted."""
        scope = f"{credential.date}/{credential.region}/{credential.service}/aws4_request"
        return cls(signing_key(secret, credential), request.header("x-amz-date") or "", scope,
                   credential.signature)

    def _check(self, to_sign: str, signature: str) -> None:
        expected = hmac.new(self.key, to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            raise SignatureError(Failure.MISMATCH, "The chunk signature we calculated does not "
                                 "match the signature you provided.")
        self.previous = expected

    def check_chunk(self, data_sha256: str, signature: str) -> None:
        """Check the next chunk's signature, given the SHA-256 of its data (hex)."""
        self._check("\n".join(["AWS4-HMAC-SHA256-PAYLOAD", self.stamp, self.scope,
                               self.previous, _EMPTY_SHA256, data_sha256]), signature)

    def check_trailer(self, canonical: bytes, signature: str) -> None:
        """Check the trailing headers' signature (``name:value\\n`` per header)."""
        self._check("\n".join(["AWS4-HMAC-SHA256-TRAILER", self.stamp, self.scope,
                               self.previous, hashlib.sha256(canonical).hexdigest()]),
                    signature)


# S3's query parameters that are part of a Signature Version 2 resource.
_V2_SUBRESOURCES = {
    "acl", "cors", "delete", "lifecycle", "location", "logging", "notification", "partNumber",
    "policy", "requestPayment", "restore", "tagging", "torrent", "uploadId", "uploads",
    "versionId", "versioning", "versions", "website", "response-cache-control",
    "response-content-disposition", "response-content-encoding", "response-content-language",
    "response-content-type", "response-expires"}


@dataclass(frozen=True)
class PresignedV2:
    """An S3 URL presigned with Signature Version 2 (what boto3's ``generate_presigned_url``
    makes for S3 unless told ``signature_version="s3v4"``)."""

    key_id: str
    signature: str
    expires: int
    string_to_sign: str


def presigned_v2(request: SignedRequest, now: datetime | None = None, *,
                 mount: str = "", bucket: str | None = None) -> PresignedV2 | None:
    """Read a Signature Version 2 presigned URL (``AWSAccessKeyId``, ``Signature``,
    ``Expires``); None when the URL is not one. Version 2 signs the path from the bucket
    on (``/bucket/key``), without the endpoint's own path (``mount``, e.g. ``/aws``);
    ``bucket`` is the bucket a virtual-host-style request named in its host.

    Raises:
        SignatureError: MALFORMED when unreadable, SKEWED when expired.
    """
    pairs = [pair.partition("=") for pair in request.raw_query.split("&") if pair]
    values = {unquote(k): unquote(v) for k, _, v in pairs}
    if "AWSAccessKeyId" not in values or "Signature" not in values:
        return None
    try:
        expires = int(values["Expires"])
    except (KeyError, ValueError):
        raise SignatureError(Failure.MALFORMED, "Query-string authentication requires the "
                             "Signature, Expires and AWSAccessKeyId parameters") from None
    if (now or datetime.now(UTC)).timestamp() > expires:
        raise SignatureError(Failure.SKEWED, "Request has expired")
    amz = sorted((k.lower(), v.strip()) for k, v in values.items()
                 if k.lower().startswith("x-amz-"))
    subresources = sorted((k, v) for k, _, v in pairs if k in _V2_SUBRESOURCES)
    path = request.raw_path
    if mount and path.startswith(mount + "/"):
        path = path[len(mount):]
    if bucket is not None:  # virtual-host style: the bucket was in the host name
        path = f"/{bucket}{path}"
    resource = path + ("?" + "&".join(
        f"{k}={unquote(v)}" if v else k for k, v in subresources) if subresources else "")
    string_to_sign = "\n".join([
        request.method.upper(), values.get("content-md5", request.header("content-md5") or ""),
        values.get("content-type", request.header("content-type") or ""), str(expires),
        *[f"{k}:{v}" for k, v in amz], resource])
    return PresignedV2(values["AWSAccessKeyId"], values["Signature"], expires, string_to_sign)


def verify_v2(presigned: PresignedV2, secret: str) -> None:
    """Check a Signature Version 2 presigned URL's signature (HMAC-SHA1, constant time).

    Raises:
        SignatureError: MISMATCH.
    """
    import base64

    expected = base64.b64encode(hmac.new(secret.encode(), presigned.string_to_sign.encode(
        "utf-8"), hashlib.sha1).digest()).decode()
    if not hmac.compare_digest(expected, presigned.signature):
        raise SignatureError(Failure.MISMATCH, "The request signature we calculated does not "
                             "match the signature you provided. Check your key and signing "
                             "method.")

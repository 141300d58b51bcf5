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
from urllib.parse import quote

__all__ = ["ALGORITHM", "MAX_SKEW", "UNSIGNED_PAYLOAD", "Credential", "Failure",
           "SignatureError", "SignedRequest", "parse_authorization", "verify"]

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
        if stamp is None:
            raise ValueError
        return datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise SignatureError(Failure.MALFORMED, "Authorization requires an X-Amz-Date header "
                             "in the form YYYYMMDDTHHMMSSZ") from None


def verify(request: SignedRequest, credential: Credential, secret: str, *,
           now: datetime | None = None, body_later: bool = False) -> str:
    """Check a request's signature; returns its payload hash as declared or computed.

    With ``body_later`` (S3 streams bodies to disk) the body is not at hand: the declared
    hash is signed as it stands, and the caller compares it with the body it streams.

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
    if abs(now - signed_at) > MAX_SKEW:
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

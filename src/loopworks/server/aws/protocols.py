"""AWS's wire protocols, as botocore's service models describe them: how a request names its
operation, and how a result or an error is written so that the client's parser (and
``client.exceptions.<Name>``) reads it.

* ``json`` (JSON 1.1: ``sagemaker``): ``POST /`` with ``X-Amz-Target: SageMaker.<Op>``; an
  error is ``{"__type": "<Name>", "message": ...}`` with ``x-amzn-ErrorType``, status 400.
* ``rest-json`` (``sagemaker-featurestore-runtime``): the operation is the method and path;
  errors carry the modelled status and ``x-amzn-ErrorType``.
* ``query`` (``sts``): a form body with ``Action``; results and errors are XML.
"""

from __future__ import annotations

import base64
import json
import secrets
from enum import StrEnum
from typing import Any
from xml.sax.saxutils import escape

from loopworks.errors import (
    ConfigurationError,
    ConflictError,
    InputError,
    LoopworksError,
    NotFoundError,
    PermissionDenied,
    RateLimited,
    ValidationError,
)
from loopworks.server.aws.sigv4 import Failure

__all__ = ["AwsError", "Protocol", "auth_error", "domain_error", "error_body", "page",
           "request_id", "required_string", "with_token"]


class Protocol(StrEnum):
    """The wire protocols spoken under /aws."""

    JSON = "json"
    REST_JSON = "rest-json"
    QUERY = "query"
    S3 = "s3"


class AwsError(Exception):
    """An error as the client's model names it (``code``), with its HTTP status."""

    def __init__(self, code: str, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def request_id() -> str:
    """A request id in AWS's form (a UUID)."""
    raw = secrets.token_hex(16)
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


#: How an authentication failure is named by each protocol, and its status.
_AUTH_CODES: dict[Protocol, dict[Failure, tuple[str, int]]] = {
    Protocol.JSON: {
        Failure.MISSING: ("MissingAuthenticationTokenException", 403),
        Failure.MALFORMED: ("IncompleteSignatureException", 400),
        Failure.UNKNOWN_KEY: ("UnrecognizedClientException", 403),
        Failure.MISMATCH: ("InvalidSignatureException", 403),
        Failure.SKEWED: ("InvalidSignatureException", 403),
        Failure.BODY: ("InvalidSignatureException", 403)},
    Protocol.QUERY: {
        Failure.MISSING: ("MissingAuthenticationToken", 403),
        Failure.MALFORMED: ("IncompleteSignature", 400),
        Failure.UNKNOWN_KEY: ("InvalidClientTokenId", 403),
        Failure.MISMATCH: ("SignatureDoesNotMatch", 403),
        Failure.SKEWED: ("SignatureDoesNotMatch", 403),
        Failure.BODY: ("SignatureDoesNotMatch", 403)},
}
_AUTH_CODES[Protocol.REST_JSON] = _AUTH_CODES[Protocol.JSON]
_AUTH_CODES[Protocol.S3] = {
    Failure.MISSING: ("AccessDenied", 403),
    Failure.MALFORMED: ("AuthorizationHeaderMalformed", 400),
    Failure.UNKNOWN_KEY: ("InvalidAccessKeyId", 403),
    Failure.MISMATCH: ("SignatureDoesNotMatch", 403),
    Failure.SKEWED: ("RequestTimeTooSkewed", 403),
    Failure.BODY: ("XAmzContentSHA256Mismatch", 400)}


def auth_error(protocol: Protocol, failure: Failure, message: str) -> AwsError:
    """An authentication failure in the protocol's own words."""
    code, status = _AUTH_CODES[protocol][failure]
    if failure is Failure.UNKNOWN_KEY:
        message = ("The AWS Access Key Id you provided does not exist in our records."
                   if protocol is Protocol.S3 else
                   "The security token included in the request is invalid.")
    return AwsError(code, message, status=status)


def domain_error(exc: LoopworksError, protocol: Protocol) -> AwsError:
    """A loopworks error as the service's modelled exception (never a 500)."""
    runtime = protocol is Protocol.REST_JSON
    if isinstance(exc, NotFoundError):
        return AwsError("ResourceNotFound", str(exc), status=404 if runtime else 400)
    if isinstance(exc, ConflictError):
        return (AwsError("ConflictException", str(exc), status=409) if runtime
                else AwsError("ResourceInUse", str(exc)))
    if isinstance(exc, RateLimited):
        return AwsError("ThrottlingException", str(exc), status=400)
    if isinstance(exc, PermissionDenied):
        return (AwsError("AccessForbidden", str(exc), status=403) if runtime
                else AwsError("AccessDeniedException", str(exc), status=400))
    if isinstance(exc, ConfigurationError | ValidationError | InputError):
        return AwsError("ValidationError" if runtime else "ValidationException", str(exc))
    return AwsError("ValidationError" if runtime else "ValidationException", str(exc))


def error_body(protocol: Protocol, error: AwsError, rid: str
               ) -> tuple[bytes, str, dict[str, str]]:
    """The body, content type and headers of an error response."""
    if protocol is Protocol.S3:
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n'
                f"<Error><Code>{escape(error.code)}</Code><Message>{escape(error.message)}"
                f"</Message><RequestId>{rid}</RequestId></Error>")
        return body.encode(), "application/xml", {}
    if protocol is Protocol.QUERY:
        body = ("<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
                f"<Error><Type>Sender</Type><Code>{escape(error.code)}</Code>"
                f"<Message>{escape(error.message)}</Message></Error>"
                f"<RequestId>{rid}</RequestId></ErrorResponse>")
        return body.encode(), "text/xml", {}
    payload: dict[str, Any] = {"message": error.message}
    if protocol is Protocol.JSON:
        payload = {"__type": error.code, "message": error.message}
    media = ("application/x-amz-json-1.1" if protocol is Protocol.JSON
             else "application/json")
    return json.dumps(payload).encode(), media, {"x-amzn-ErrorType": error.code}


def required_string(params: dict[str, Any], name: str) -> str:
    """A required, non-empty string parameter (ValidationException otherwise)."""
    value = params.get(name)
    if not isinstance(value, str) or not value:
        raise AwsError("ValidationException", f"1 validation error detected: Value at "
                       f"'{name[0].lower() + name[1:]}' failed to satisfy constraint: Member "
                       "must not be null")
    return value


def with_token(out: dict[str, Any], token: str | None) -> dict[str, Any]:
    """A List* answer with its ``NextToken`` when there is a next page."""
    if token:
        out["NextToken"] = token
    return out


def page(items: list[Any], params: dict[str, Any], default: int = 10
         ) -> tuple[list[Any], str | None]:
    """One page of ``items`` by ``MaxResults`` (1-100) and ``NextToken`` (an opaque offset
    this server gave), and the token of the next page (None at the end)."""
    limit = params.get("MaxResults", default)
    if not isinstance(limit, int) or not 1 <= limit <= 100:
        raise AwsError("ValidationException", "MaxResults must be between 1 and 100")
    token = params.get("NextToken")
    start = 0
    if token:
        try:
            start = int(json.loads(base64.urlsafe_b64decode(token.encode()))["offset"])
        except (ValueError, KeyError, TypeError):
            raise AwsError("ValidationException", "NextToken is not a token this server "
                           "gave") from None
    chunk = items[start:start + limit]
    following = start + limit
    if following >= len(items):
        return chunk, None
    return chunk, base64.urlsafe_b64encode(json.dumps({"offset": following}).encode()).decode()

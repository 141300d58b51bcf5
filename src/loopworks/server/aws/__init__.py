"""The AWS-compatible endpoint: ``loopworks serve`` answers AWS's wire protocols under /aws.

``export AWS_ENDPOINT_URL=http://HOST:PORT/aws`` and a key pair from ``loopworks worker
aws-keys NAME`` point unmodified boto3 code at loopworks. Each request is routed by its
protocol (``X-Amz-Target`` for JSON 1.1, the method and path for rest-json, ``Action`` for
query) and the service of its SigV4 scope, authenticated (:mod:`.sigv4`, with the worker's
derived secret), authorized by the worker's role, and answered in the shapes of botocore's
service models (:mod:`.protocols`). The operations themselves live beside: the Feature Store
in :mod:`.featurestore`, STS here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit
from xml.sax.saxutils import escape

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from loopworks.errors import LoopworksError, PermissionDenied
from loopworks.labeling.workforce import Worker
from loopworks.objectstore import BUCKET_PATTERN
from loopworks.server.aws import featurestore, humanloop, labelingjobs, processingjobs
from loopworks.server.aws.featurestore import Call
from loopworks.server.aws.protocols import (
    AwsError,
    Protocol,
    auth_error,
    domain_error,
    error_body,
    request_id,
)
from loopworks.server.aws.sigv4 import (
    SIGNED_CHUNKS,
    ChunkChain,
    Credential,
    Failure,
    SignatureError,
    SignedRequest,
    parse_authorization,
    presigned,
    presigned_v2,
    verify,
    verify_v2,
)
from loopworks.server.state import services_of
from loopworks.services import Loopworks

__all__ = ["CONTROL_PLANE", "MAX_BODY_BYTES", "PREFIX", "AwsRouter", "aws_endpoint"]

log = logging.getLogger(__name__)
#: Where the endpoint is mounted.
PREFIX = "/aws"
#: The largest request body the JSON and query protocols take (AWS's own limits are lower).
MAX_BODY_BYTES = 16 << 20
_SERVICE = {Protocol.JSON: "sagemaker", Protocol.REST_JSON: "sagemaker", Protocol.QUERY: "sts",
            Protocol.S3: "s3"}
_RUNTIME_PATHS = ("/FeatureGroup/", "/BatchGetRecord", "/BatchWriteRecord", "/human-loops")
_STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"
#: The ``SageMaker.*`` operations this server answers, by name.
CONTROL_PLANE: dict[str, featurestore.Handler] = {**featurestore.CONTROL_PLANE,
                                                  **humanloop.CONTROL_PLANE,
                                                  **labelingjobs.CONTROL_PLANE,
                                                  **processingjobs.CONTROL_PLANE}


def _protocol(request: Request) -> Protocol:
    if request.headers.get("x-amz-target"):
        return Protocol.JSON
    authorization = request.headers.get("authorization", "")
    if "/s3/aws4_request" in authorization:
        return Protocol.S3
    if "/sts/aws4_request" in authorization or (
            request.method == "POST" and request.headers.get("content-type", "").startswith(
                "application/x-www-form-urlencoded")):
        return Protocol.QUERY
    if _route_path(request).startswith(_RUNTIME_PATHS):
        return Protocol.REST_JSON
    return Protocol.S3


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise AwsError("ValidationException", f"the request body is larger than "
                       f"{MAX_BODY_BYTES >> 20} MB", status=413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise AwsError("ValidationException", f"the request body is larger than "
                           f"{MAX_BODY_BYTES >> 20} MB", status=413)
        chunks.append(chunk)
    return b"".join(chunks)


def _route_path(request: Request) -> str:
    raw = request.scope.get("raw_path") or request.url.path.encode()
    path = unquote(raw.decode("latin-1"))
    return path[len(PREFIX):] if path.startswith(PREFIX) else path


def _json_params(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        params = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise AwsError("SerializationException", "the request body is not valid JSON") \
            from None
    if not isinstance(params, dict):
        raise AwsError("SerializationException", "the request body must be a JSON object")
    return params


def _runtime_call(request: Request, body: bytes
                  ) -> tuple[Callable[[Call], dict[str, Any]], dict[str, Any]]:
    path = _route_path(request).rstrip("/")
    query = parse_qsl(request.url.query, keep_blank_values=True)
    params: dict[str, Any] = {}
    for key, value in query:
        if key in ("FeatureName", "TargetStores"):
            params.setdefault("FeatureNames" if key == "FeatureName" else key, []).append(value)
        else:
            params[key] = value
    parts = path.split("/")
    if len(parts) == 3 and parts[1] == "FeatureGroup" and parts[2]:
        params["FeatureGroupName"] = parts[2]
        handler = featurestore.RUNTIME.get((request.method, "record"))
        if handler is not None:
            if request.method == "PUT":
                params.update(_json_params(body))
            return handler, params
    if len(parts) == 4 and parts[1] == "FeatureGroup" and request.method == "POST" \
            and parts[3] in ("ListRecords", "Record"):
        params.update(_json_params(body))
        params["FeatureGroupName"] = parts[2]
        return featurestore.RUNTIME[("POST", "list" if parts[3] == "ListRecords"
                                     else "update")], params
    if path == "/human-loops" or path.startswith("/human-loops/"):
        return _a2i_call(request, path, params, body)
    if path in ("/BatchGetRecord", "/BatchWriteRecord") and request.method == "POST":
        kind = "batch-get" if path == "/BatchGetRecord" else "batch-write"
        return featurestore.RUNTIME[("POST", kind)], _json_params(body)
    raise AwsError("UnknownOperationException", f"{request.method} {path} is not an "
                   "operation this server supports", status=404)


def _a2i_call(request: Request, path: str, params: dict[str, Any], body: bytes
              ) -> tuple[Callable[[Call], dict[str, Any]], dict[str, Any]]:
    """sagemaker-a2i-runtime's routes: /human-loops[/stop | /NAME]."""
    rest = path[len("/human-loops"):].strip("/")
    method = request.method
    if not rest and method in ("POST", "GET"):
        kind = "start" if method == "POST" else "list"
    elif rest == "stop" and method == "POST":
        kind = "stop"
    elif rest and "/" not in rest and method in ("GET", "DELETE"):
        kind = "describe" if method == "GET" else "delete"
        params["HumanLoopName"] = rest
    else:
        raise AwsError("UnknownOperationException", f"{method} {path} is not an operation "
                       "this server supports", status=404)
    if method == "POST":
        params.update(_json_params(body))
    return humanloop.A2I_RUNTIME[(method, kind)], params


def _sts(call: Call, key_id: str, rid: str) -> str:
    action = call.params.get("Action")
    if action != "GetCallerIdentity":
        raise AwsError("InvalidAction", f"Could not find operation {action} for version "
                       f"{call.params.get('Version', '')}")
    account = call.lw.settings.aws_account_id
    return (f'<GetCallerIdentityResponse xmlns="{_STS_NS}"><GetCallerIdentityResult>'
            f"<Arn>arn:aws:iam::{account}:user/{escape(call.worker.name)}</Arn>"
            f"<UserId>{escape(key_id)}</UserId><Account>{escape(account)}</Account>"
            f"</GetCallerIdentityResult><ResponseMetadata><RequestId>{rid}</RequestId>"
            "</ResponseMetadata></GetCallerIdentityResponse>")


def _resolve(lw: Loopworks, key_id: str) -> tuple[Worker, str]:
    """The worker a key belongs to and its secret (an unknown, revoked or deactivated
    worker's key is an authentication failure)."""
    try:
        return lw.access_keys.resolve(key_id)
    except PermissionDenied:
        raise SignatureError(Failure.UNKNOWN_KEY, "unknown access key") from None


@dataclass(frozen=True)
class _Caller:
    """Who signed a request, and the scope they signed it for (None: S3 Signature V2)."""

    worker: Worker
    credential: Credential | None
    chain: ChunkChain | None = None


def virtual_bucket(host: str | None, bases: tuple[str, ...]) -> str | None:
    """The bucket of a virtual-host-style S3 request (``Host: BUCKET.BASE[:port]``), where
    BASE is one of the server's own host names; None for path style."""
    if not host:
        return None
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    for base in bases:
        if name.endswith("." + base):
            bucket = name[:-len(base) - 1]
            if BUCKET_PATTERN.match(bucket):
                return bucket
    return None


def _bases(lw: Loopworks) -> tuple[str, ...]:
    """Host names under which ``BUCKET.HOST`` addresses a bucket: ``localhost`` (RFC 6761
    sends every ``*.localhost`` name to this machine) and the public_url's host (which needs
    a wildcard DNS record, as with any S3 server)."""
    public = urlsplit(lw.settings.public_url or "").hostname
    return ("localhost", public) if public and public != "localhost" else ("localhost",)


def _authenticate(lw: Loopworks, protocol: Protocol, signed: SignedRequest,
                  bucket: str | None = None) -> _Caller:
    """Check the request's signature (header, presigned v4 or, for S3, presigned v2) with
    its key's secret; an S3 body is checked as it streams in."""
    s3 = protocol is Protocol.S3
    try:
        by_query = None if signed.header("authorization") else presigned(signed)
        old_style = None if by_query or signed.header("authorization") or not s3 \
            else presigned_v2(signed, mount=PREFIX, bucket=bucket)
        if old_style is not None:  # an S3 URL presigned with Signature Version 2
            worker, secret = _resolve(lw, old_style.key_id)
            verify_v2(old_style, secret)
            return _Caller(worker, None)
        if by_query is not None:
            signed, credential = by_query
        else:
            credential = parse_authorization(signed.header("authorization"))
        expected = _SERVICE[protocol]
        if credential.service != expected:
            raise SignatureError(Failure.MISMATCH, f"Credential should be scoped to correct "
                                 f"service: '{expected}'.")
        worker, secret = _resolve(lw, credential.key_id)
        declared = verify(signed, credential, secret, body_later=s3,
                          check_clock=by_query is None)
    except SignatureError as exc:
        raise auth_error(protocol, exc.failure, exc.message) from None
    chain = ChunkChain.seeded(signed, credential, secret) \
        if s3 and by_query is None and declared in SIGNED_CHUNKS else None
    return _Caller(worker, credential, chain)


def _operate(lw: Loopworks, protocol: Protocol, signed: SignedRequest, request: Request,
             rid: str) -> Response:
    """Authenticate and answer a JSON, rest-json or query request: one trip to a worker
    thread for the whole call (the database lookups, the signature and the operation)."""
    caller = _authenticate(lw, protocol, signed)
    assert caller.credential is not None  # only S3 takes Signature V2
    credential, body = caller.credential, signed.body
    headers = {"x-amzn-RequestId": rid}
    if protocol is Protocol.QUERY:
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        xml = _sts(Call(lw, caller.worker, credential.region, form), credential.key_id, rid)
        return Response(xml, media_type="text/xml", headers=headers)
    if protocol is Protocol.JSON:
        target = signed.header("x-amz-target") or ""
        prefix, _, operation = target.partition(".")
        found = CONTROL_PLANE.get(operation) if prefix == "SageMaker" else None
        if found is None:
            raise AwsError("UnknownOperationException", f"{target} is not an operation this "
                           "server supports")
        handler: Callable[[Call], dict[str, Any]] = found
        params = _json_params(body)
        media = "application/x-amz-json-1.1"
    else:
        handler, params = _runtime_call(request, body)
        media = "application/json"
    result = handler(Call(lw, caller.worker, credential.region, params,
                          signed.header("host") or ""))
    return Response(json.dumps(result, separators=(",", ":")), media_type=media,
                    headers=headers)


async def _answer(request: Request, protocol: Protocol, rid: str) -> Response:
    lw = services_of(request.app)
    s3 = protocol is Protocol.S3
    body = b"" if s3 else await _body(request)
    signed = SignedRequest(
        request.method, (request.scope.get("raw_path") or b"").decode("latin-1"),
        request.scope.get("query_string", b"").decode("latin-1"),
        tuple((k.decode("latin-1").lower(), v.decode("latin-1"))
              for k, v in request.scope["headers"]), body)
    if not s3:
        return await run_in_threadpool(_operate, lw, protocol, signed, request, rid)
    from loopworks.server.aws.s3 import Payload, handle

    bucket = virtual_bucket(request.headers.get("host"), _bases(lw))
    caller = await run_in_threadpool(_authenticate, lw, protocol, signed, bucket)
    payload = Payload(request.headers.get("x-amz-content-sha256"), caller.chain)
    path = _route_path(request)
    if bucket is not None:  # virtual-host style: served as the path-style request it means
        path = f"/{bucket}{path}" if path != "/" else f"/{bucket}"
    response = await handle(request, lw.objects, caller.worker, path, payload,
                            lw.settings.aws_account_id)
    response.headers["x-amz-request-id"] = rid
    return response


async def aws_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI app mounted at :data:`PREFIX`: every answer in the protocol's own shape,
    errors included (never a framework error page)."""
    if scope["type"] != "http":
        return
    request = Request(scope, receive)
    protocol = _protocol(request)
    rid = request_id()
    try:
        response = await _answer(request, protocol, rid)
    except AwsError as exc:
        response = _error(protocol, exc, rid)
    except LoopworksError as exc:
        response = _error(protocol, domain_error(exc, protocol), rid)
    except Exception:  # a bug: logged with its request id, answered in the client's shape
        log.exception("AWS request %s failed", rid)
        response = _error(protocol, AwsError("InternalFailure", "The request processing has "
                                             "failed because of an unknown error.",
                                             status=500), rid)
    await response(scope, receive, send)


class AwsRouter:
    """Sends /aws and everything under it to :func:`aws_endpoint`, ahead of the app's own
    routes and page middleware (sessions, page headers): AWS clients post to the prefix
    itself, which a mounted sub-application would answer with a redirect."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path == PREFIX or path.startswith(PREFIX + "/"):
            await aws_endpoint(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def _error(protocol: Protocol, error: AwsError, rid: str) -> Response:
    body, media, headers = error_body(protocol, error, rid)
    return Response(body, status_code=error.status, media_type=media,
                    headers={**headers, "x-amzn-RequestId": rid})

"""``create_app``: the FastAPI application on the services of a loopworks home."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Response
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, Field

from loopworks import __version__
from loopworks.featurestore import FeatureStore
from loopworks.metadata.database import BackgroundCheckpointer
from loopworks.server.auth import new_token, require_feature_reader
from loopworks.server.bodies import require_unicode_body
from loopworks.server.errors import error_responses, install_error_handlers
from loopworks.server.fastpath import encode_json
from loopworks.server.security import install_security
from loopworks.server.state import services_of
from loopworks.services import Loopworks
from loopworks.services import open as open_services

__all__ = ["create_app"]


class BatchGetRequest(BaseModel):
    """Ids to fetch, and optionally which features."""

    ids: list[str] = Field(..., max_length=10_000)
    features: list[str] | None = None


def _encode(value: dict[str, Any]) -> dict[str, Any]:
    encoded: dict[str, Any] = jsonable_encoder(
        value, custom_encoder={datetime: lambda d: d.isoformat()})
    return encoded


def _json(value: Any) -> Response:
    """Records straight to JSON: the hot read path skips FastAPI's generic encoder."""
    return Response(encode_json(value), media_type="application/json")


def _install_pages(app: FastAPI) -> None:
    """Browser pages: signed session cookies, static files, the page routes."""
    from pathlib import Path

    from fastapi.staticfiles import StaticFiles
    from starlette.middleware.sessions import SessionMiddleware

    from loopworks.server import pages
    from loopworks.server.sessions import SESSION_SECONDS, secret_key, secure_cookies

    settings = services_of(app).settings
    app.add_middleware(SessionMiddleware, secret_key=secret_key(settings.home, settings),
                       session_cookie="loopworks_session", max_age=SESSION_SECONDS,
                       same_site="lax", https_only=secure_cookies(settings))
    app.mount("/static", StaticFiles(directory=Path(pages.__file__).parent / "static"),
              name="static")
    app.include_router(pages.router)
    from loopworks.server.studio import router as studio_router

    app.include_router(studio_router)


def create_app(store: FeatureStore | None = None, *, services: Loopworks | None = None,
               api_token: str | None = None) -> FastAPI:
    """Build the app on the services of a home (default: :func:`loopworks.open` of the
    settings' home, or of ``store``'s). ``api_token`` defaults to the ``api_token`` setting
    or a random one. The app closes the services it opened itself when it stops."""
    owned = services is None
    lw = services if services is not None else open_services(store=store)
    checkpointers: list[BackgroundCheckpointer | None] = [None]  # while the app runs

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        checkpointer = checkpointers[0] = BackgroundCheckpointer(lw.engine)
        # Writes a killed process left half done are finished before the first request,
        # not on the event loop in the middle of serving; webhooks left pending are sent.
        lw.resume()
        yield
        checkpointer.close()
        checkpointers[0] = None
        if owned:
            lw.close()  # a running round finishes; pending deliveries stay in the outbox

    # /docs is served offline by install_security (FastAPI's own pages load a CDN).
    app = FastAPI(title="loopworks", version=__version__, lifespan=lifespan,
                  description="Feature store, labeling and human review API.",
                  docs_url=None, redoc_url=None)
    app.state.loopworks = lw
    app.state.api_token = api_token or lw.settings.api_token or new_token()
    install_error_handlers(app)
    install_security(app)
    _install_pages(app)
    api = APIRouter(prefix="/api", dependencies=[Depends(require_feature_reader),
                                                 Depends(require_unicode_body)],
                    responses=error_responses(401, 403))

    def fs() -> FeatureStore:
        return lw.features

    @app.get("/healthz", include_in_schema=False)
    def health() -> dict[str, Any]:
        """Up, and how big the metadata database's SQLite write-ahead log is (a server
        keeps it bounded; PostgreSQL: null)."""
        checkpointer = checkpointers[0]
        wal = checkpointer.wal_bytes() if checkpointer is not None else None
        return {"status": "ok", "database": {
            "dialect": fs().registry.engine.dialect.name, "wal_bytes": wal,
            "wal_truncations": checkpointer.truncations if checkpointer else 0}}

    @api.get("/feature-groups")
    def list_groups() -> list[dict[str, Any]]:
        """Every feature group's description."""
        return [s.to_dict() for s in fs().list_feature_groups()]

    @api.get("/feature-groups/search", responses=error_responses(422))
    def search(q: Annotated[str, Query(min_length=1)]) -> list[dict[str, Any]]:
        """Search groups and features by name, description, tag and type."""
        return fs().search(q)

    @api.get("/feature-groups/{name}", responses=error_responses(404, 422))
    def describe(name: str) -> dict[str, Any]:
        """One group: definitions, tags, transformation metadata, offline figures."""
        return _encode(fs().feature_group(name).describe())

    # The online read path is async: a record read takes tens of microseconds, less than
    # the hop to a worker thread would cost.
    @api.get("/feature-groups/{name}/records/{record_id}",
             responses=error_responses(404, 422))
    async def get_record(name: str, record_id: str,
                   feature: Annotated[list[str] | None, Query()] = None) -> Response:
        """The latest online record (404 when missing, deleted or expired)."""
        from loopworks.errors import NotFoundError

        record = fs().feature_group(name).get_record(record_id, feature)
        if record is None:
            raise NotFoundError(f"no record {record_id!r} in feature group {name!r}",
                                feature_group=name, record_id=record_id)
        return _json(record)

    @api.post("/feature-groups/{name}/records/batch-get",
              responses=error_responses(400, 404, 422))
    async def batch_get(name: str, body: BatchGetRequest) -> Response:
        """Latest records for many ids, in order (null where none)."""
        records = fs().feature_group(name).batch_get_record(body.ids, body.features)
        return _json({"records": records})

    app.include_router(api)
    from loopworks.server.labeling import router as labeling_router

    app.include_router(labeling_router)
    from loopworks.server.review import router as review_router

    app.include_router(review_router)
    from loopworks.server.aws import AwsRouter
    from loopworks.server.fastpath import FeatureReads
    from loopworks.server.security import outermost

    # The online record read, the request sent most, skips the framework when it succeeds.
    outermost(app, lambda inner: FeatureReads(inner, app))

    # /aws (boto3 and the SageMaker SDK, AWS_ENDPOINT_URL) answers ahead of every layer of
    # the app: it has its own errors, auth and headers, and its hot calls are per request.
    outermost(app, AwsRouter)
    return app

"""Studio pages: the feature catalog, the SQL console and processing jobs, for people who may
read features (admins). Server-rendered on the same templates, sessions and CSRF as the
labeling pages; charts are inline SVG drawn by the templates.

Processing jobs started here run in the server's own process, one at a time, on the app's
:class:`~loopworks.processing.JobRunner` (made on first use, closed when the app stops).
"""

from __future__ import annotations

import io
from typing import Annotated, Any
from urllib.parse import quote

import pyarrow as pa
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from loopworks.errors import ConfigurationError, LoopworksError, PermissionDenied
from loopworks.featurestore import FeatureStore
from loopworks.featurestore.console import QueryHistory
from loopworks.featurestore.sql import sql_identifier
from loopworks.labeling.workforce import Role, Worker
from loopworks.processing.config import MAX_SEQ_LENGTH, ProcessingConfig
from loopworks.processing.report import FileJobStore
from loopworks.server.pages import render
from loopworks.server.sessions import check_csrf, page_worker
from loopworks.server.state import services

__all__ = ["router"]


router = APIRouter(prefix="/studio", include_in_schema=False)
PAGE_ROWS = 50
#: Worker processes a Studio job uses at most: the server shares its machine.
JOB_WORKERS = 2


def _reader(me: Annotated[Worker, Depends(page_worker)]) -> Worker:
    if me.role is not Role.ADMIN:
        raise PermissionDenied(f"worker {me.name!r} ({me.role.value}) may not read feature "
                               "groups", worker=me.name)
    return me


Reader = Annotated[Worker, Depends(_reader)]


def _store(request: Request) -> FeatureStore:
    return services(request).features


def _cell(value: Any) -> str:
    """A result cell as short text (long lists are cut: 128 token ids do not fit a cell)."""
    if isinstance(value, list):
        head = ", ".join(map(str, value[:8]))
        return f"[{head}{', …' if len(value) > 8 else ''}] ({len(value)})"
    if value is None:
        return "∅"
    text = str(value)
    return text if len(text) <= 200 else text[:200] + "…"


def _rows(table: pa.Table) -> list[list[str]]:
    return [[_cell(v) for v in row.values()] for row in table.to_pylist()]


# -------------------------------------------------------------------- catalog
@router.get("")
def catalog(request: Request, me: Reader, q: str = "") -> HTMLResponse:
    """Every feature group, or what a search finds among groups and features."""
    store = _store(request)
    groups = [g.describe() for g in (store.feature_group(s.name)
                                     for s in store.list_feature_groups())]
    hits = store.search(q) if q.strip() else None
    return render(request, "studio_catalog.html", me=me, q=q, groups=groups, hits=hits)


def ready_queries(info: dict[str, Any]) -> list[tuple[str, str]]:
    """Queries worth one click on a group's page, built from its own columns."""
    columns = {f["name"] for f in info["features"]}
    name = sql_identifier(info["name"])
    latest = sql_identifier(info["name"] + "_latest")
    label = next((c for c in ("sentiment", "label_id", "label") if c in columns), None)
    queries = [("Recent records", f"SELECT * FROM {latest} ORDER BY "
                f'"{info["event_time"]}" DESC LIMIT 20')]
    if label and "split_type" in columns:
        queries.append((f"Count by {label} and split",
                        f"SELECT split_type, {label}, count(*) AS records FROM {latest} "
                        "GROUP BY 1, 2 ORDER BY 1, 2"))
    elif label:
        queries.append((f"Count by {label}", f"SELECT {label}, count(*) AS records FROM "
                        f"{latest} GROUP BY 1 ORDER BY 1"))
    queries.append(("Writes per day", f'SELECT CAST(write_time AS DATE) AS day, count(*) AS '
                    f'records, sum(CAST(is_deleted AS INT)) AS deletes FROM {name} GROUP BY 1 '
                    "ORDER BY 1"))
    return queries


@router.get("/groups/{name}")
def group_page(request: Request, name: str, me: Reader) -> HTMLResponse:
    """A group's definitions, figures, transformation metadata and sample records."""
    from loopworks.featurestore.console import readonly_query

    info = _store(request).feature_group(name).describe()
    sample = None
    if info.get("offline", {}).get("rows"):
        table = sql_identifier(name + "_latest")
        sample = readonly_query(_store(request), f"SELECT * FROM {table} LIMIT 5",
                                limit=5)
    return render(request, "studio_group.html", me=me, info=info, queries=ready_queries(info),
                  sample=sample, sample_rows=_rows(sample.table) if sample else [])


# -------------------------------------------------------------------- console
def _history(request: Request) -> QueryHistory:
    return QueryHistory(_store(request).registry.engine)


@router.get("/console")
def console(request: Request, me: Reader, sql: str = "") -> HTMLResponse:
    """The console with a query ready to run (nothing runs on a GET)."""
    return render(request, "studio_console.html", me=me, sql=sql, result=None, error=None,
                  recent=_history(request).recent(me.id))


@router.post("/console")
def run_console(request: Request, me: Reader, sql: Annotated[str, Form()],
                csrf_token: Annotated[str, Form()] = "",
                page: Annotated[int, Form(ge=0)] = 0) -> HTMLResponse:
    """Run a read-only query and show one page of its result."""
    from loopworks.featurestore.console import readonly_query

    check_csrf(request, csrf_token)
    history = _history(request)
    try:
        result = readonly_query(_store(request), sql, limit=PAGE_ROWS, offset=page * PAGE_ROWS)
    except LoopworksError as exc:
        history.add(me.id, sql.strip(), ok=False)
        return render(request, "studio_console.html", status_code=422, me=me, sql=sql,
                      result=None, error=str(exc), recent=history.recent(me.id))
    history.add(me.id, sql.strip(), ok=True)
    return render(request, "studio_console.html", me=me, sql=sql, result=result, page=page,
                  rows=_rows(result.table), recent=history.recent(me.id))


@router.post("/console/download")
def download(request: Request, me: Reader, sql: Annotated[str, Form()],
             csrf_token: Annotated[str, Form()] = "",
             format: Annotated[str, Form()] = "csv") -> Response:  # noqa: A002
    """The whole result (up to a million rows) as CSV or Parquet."""
    import pyarrow.parquet as pq

    from loopworks.featurestore.console import MAX_DOWNLOAD_ROWS, readonly_query
    from loopworks.featurestore.sql import csv_safe

    check_csrf(request, csrf_token)
    if format not in ("csv", "parquet"):
        raise ConfigurationError("download as csv or parquet", setting="format")
    result = readonly_query(_store(request), sql, limit=MAX_DOWNLOAD_ROWS, time_limit=120)
    buffer = io.BytesIO()
    if format == "parquet":
        pq.write_table(result.table, buffer)
        media = "application/vnd.apache.parquet"
    else:
        import pyarrow.csv as pacsv

        pacsv.write_csv(csv_safe(result.table), buffer)
        media = "text/csv"
    return Response(buffer.getvalue(), media_type=media, headers={
        "Content-Disposition": f'attachment; filename="query.{format}"',
        "X-Rows-Truncated": "yes" if result.more else "no"})


# ----------------------------------------------------------------------- jobs
def _job_records(request: Request) -> FileJobStore:
    return services(request).jobs.records


def _jobs_form(request: Request, me: Worker, status_code: int = 200,
               error: str | None = None, **form: Any) -> HTMLResponse:
    return render(request, "studio_jobs.html", status_code, me=me,
                  reports=_job_records(request).list(),
                  script_jobs=services(request).processing_jobs.list(), error=error,
                  form={"max_seq_length": 128, **form}, max_seq_length=MAX_SEQ_LENGTH)


@router.get("/jobs")
def jobs_page(request: Request, me: Reader) -> HTMLResponse:
    """Processing jobs, newest first, and a form to start one."""
    return _jobs_form(request, me)


@router.get("/jobs/{job_id}")
def job_page(request: Request, job_id: str, me: Reader) -> HTMLResponse:
    """One job: counts, rejects by reason, splits, timings and token lengths as charts; its
    progress while it runs (the page reloads itself until the job ends), its error if it
    failed."""
    report = _job_records(request).get(job_id).to_dict()
    tokens = report.get("tokens") or {}
    histogram = tokens.get("histogram")
    bins: dict[str, int] = {}
    if histogram:
        edges = histogram["edges"]
        for i, count in enumerate(histogram["counts"]):
            bins[f"{edges[i]}–{edges[i + 1]}"] = count
        bins[f"> {edges[-1]} (cut)"] = histogram["over"]
    counts = report.get("counts") or {}
    timings = {k: round(v, 3) for k, v in (report.get("timings") or {}).items()
               if "." not in k and k != "total"}
    page = render(request, "studio_job.html", me=me, report=report, bins=bins,
                  rejects=counts.get("rejected_by_reason") or {},
                  splits=counts.get("rows_by_split") or {}, timings=timings, tokens=tokens)
    if report["status"] in ("queued", "running"):
        page.headers["Refresh"] = "2"  # no script: the browser reloads until the job ends
    return page


#: How much of each instance's log a script job's page shows (its end).
LOG_TAIL_BYTES = 64 * 1024


@router.get("/processing-jobs/{name}")
def processing_job_page(request: Request, name: str, me: Reader) -> HTMLResponse:
    """A script job (SageMaker Processing): status, each instance's exit code and the end
    of its log; the page reloads itself until the job ends."""
    jobs = services(request).processing_jobs
    job = jobs.get(name)
    logs = []
    for host in job.hosts:
        path = jobs.log_path(name, host)
        text = ""
        if path.is_file():
            with path.open("rb") as fh:
                fh.seek(max(0, path.stat().st_size - LOG_TAIL_BYTES))
                text = fh.read().decode("utf-8", "replace")
        logs.append((host, text))
    page = render(request, "studio_processing_job.html", me=me, job=job, logs=logs)
    if job.status in ("InProgress", "Stopping"):
        page.headers["Refresh"] = "2"
    return page


@router.post("/jobs")
def start_job(request: Request, me: Reader, input: Annotated[str, Form()],  # noqa: A002
              out: Annotated[str, Form()], csrf_token: Annotated[str, Form()] = "",
              feature_group: Annotated[str, Form()] = "",
              max_seq_length: Annotated[str, Form()] = "128",
              balance: Annotated[str, Form()] = "") -> Response:
    """Start a processing job in the server, checked as `loopworks process` checks it: a
    bad value, a missing input or an unusable output shows on the form (422) and starts
    nothing; otherwise the job's page follows it."""
    check_csrf(request, csrf_token)
    form = {"input": input, "out": out, "feature_group": feature_group,
            "max_seq_length": max_seq_length, "balance": bool(balance)}
    try:
        settings = services(request).settings
        config = ProcessingConfig(
            inputs=input.strip(), out=out.strip(), workers=min(settings.workers, JOB_WORKERS),
            tokenizer=settings.tokenizer, max_seq_length=_whole_number(max_seq_length,
                                                                      "max_seq_length"),
            balance=bool(balance), feature_group=feature_group.strip() or None)
        report = services(request).jobs.submit(config)
    except LoopworksError as exc:
        return _jobs_form(request, me, 422, error=str(exc), **form)
    request.session["flash"] = f"Started processing {input} → {out}"
    return RedirectResponse(f"/studio/jobs/{quote(report.job_id)}", status_code=303)


def _whole_number(text: str, name: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ConfigurationError(f"{name} must be a whole number; got {text!r}",
                                 setting=name) from None


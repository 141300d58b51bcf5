"""Server-rendered pages: sign in, my jobs, label a task, a job's admin dashboard.

The pages call the same domain objects as the JSON API (``LabelingJobs``), so the rules
(team membership, leases, quotas) are enforced once. Every page route resolves the
signed-in worker first (:func:`page_worker`); every POST checks the CSRF token; Jinja2
autoescapes everything it renders, and user text reaches JavaScript only through
``tojson`` data blocks and ``textContent``.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import re
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from jinja2 import Environment, PackageLoader, TemplateError, select_autoescape
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from loopworks.errors import (
    ConflictError,
    LoopworksError,
    NotFoundError,
    PermissionDenied,
    RateLimited,
)
from loopworks.labeling.jobs import JobSpec, LabelingJobs, Task
from loopworks.labeling.manifest import TASK_INPUT_FIELD
from loopworks.labeling.tasktypes import TaskType
from loopworks.labeling.workforce import Role, Worker
from loopworks.review.flows import FlowDefinition
from loopworks.server.labeling import ItemId
from loopworks.server.sessions import (
    check_csrf,
    csrf_token,
    page_worker,
    sign_in,
    sign_out,
)
from loopworks.server.state import services

__all__ = ["render", "router"]

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)
templates = Environment(loader=PackageLoader("loopworks.server", "templates"),
                        autoescape=select_autoescape(["html"]), trim_blocks=True,
                        lstrip_blocks=True)

def _sanitized(value: Any) -> Markup:
    """``|safe`` in a flow's template: the value comes from task input, not from the admin
    who wrote the template, so its markup is cleaned (nh3: no scripts, no ``<meta>``
    refresh, no forms, no event handlers, no ``javascript:`` links) instead of trusted."""
    import nh3

    return Markup(nh3.clean(str(value)))


_sandbox = SandboxedEnvironment(autoescape=True)
_sandbox.filters["safe"] = _sanitized
Me = Annotated[Worker, Depends(page_worker)]


def render(request: Request, name: str, status_code: int = 200, *, notice: str | None = None,
           nonce: str | None = None, **context: Any) -> HTMLResponse:
    """Render a template with the request, the CSRF token and any flash message (a
    ``notice`` is shown after it). A ``nonce`` also lets the scripts and styles that carry
    it run (a custom task template's own)."""
    flash = request.session.pop("flash", None) if "session" in request.scope else None
    if notice:
        flash = f"{flash} {notice}" if flash else notice
    html = templates.get_template(name).render(
        request=request, csrf=csrf_token(request), flash=flash, **context)
    return HTMLResponse(html, status_code=status_code,
                        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                 "Content-Security-Policy": _CSP if nonce is None else
                                 _CSP.replace("script-src 'self'",
                                              f"script-src 'self' 'nonce-{nonce}'")
                                 .replace("style-src 'self'",
                                          f"style-src 'self' 'nonce-{nonce}'")})


# Scripts and styles come only from this server; no inline script runs (data blocks are JSON).
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _safe_next(target: str | None) -> str:
    """Only same-site paths are followed after sign-in (no open redirect)."""
    if target and target.startswith("/") and not target.startswith("//"):
        return target
    return "/"


def _jobs(request: Request) -> LabelingJobs:
    return services(request).labeling


# ------------------------------------------------------------------ sign in / out
@router.get("/login")
def login_form(request: Request, next: str = "/") -> HTMLResponse:  # noqa: A002
    """Sign in with name and password (workers without one use their login link)."""
    return render(request, "login.html", next=_safe_next(next), error=None)


@router.post("/login")
def login(request: Request, name: Annotated[str, Form(max_length=200)],
          password: Annotated[str, Form(max_length=1000)],
          csrf_token: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/"  # noqa: A002
          ) -> Response:
    check_csrf(request, csrf_token)
    address = request.client.host if request.client else None
    try:
        worker = services(request).workforce.authenticate_password(name, password,
                                                                    address=address)
    except RateLimited as exc:
        response = render(request, "login.html", status_code=429, next=_safe_next(next),
                          error=f"Too many failed sign-ins: {exc}.")
        response.headers["Retry-After"] = str(exc.fields.get("retry_after", 60))
        return response
    except (PermissionDenied, NotFoundError):
        return render(request, "login.html", status_code=401, next=_safe_next(next),
                      error="Unknown name or wrong password.")
    sign_in(request, worker)
    return _redirect(_safe_next(next))


@router.get("/login/{secret}")
def login_link(request: Request, secret: str) -> HTMLResponse:
    """A one-time link opens a page with a button: link previews cannot use it up."""
    return render(request, "login_link.html", secret=secret)


@router.post("/login/{secret}")
def redeem_link(request: Request, secret: str,
                csrf_token: Annotated[str, Form()] = "") -> Response:
    check_csrf(request, csrf_token)
    try:
        worker = services(request).workforce.redeem_login_link(secret)
    except PermissionDenied as exc:
        return render(request, "login.html", status_code=401, next="/", error=str(exc))
    sign_in(request, worker)
    return _redirect("/")


@router.post("/logout")
def logout(request: Request, csrf_token: Annotated[str, Form()] = "") -> Response:
    check_csrf(request, csrf_token)
    sign_out(request)
    return _redirect("/login")


# ------------------------------------------------------------------------ jobs
@router.get("/")
def home(request: Request, me: Me) -> HTMLResponse:
    """My jobs with their progress and my own count."""
    from loopworks.labeling.progress import my_answer_count

    jobs = _jobs(request)
    rows = [{"spec": s, "mine": my_answer_count(jobs, s.name, me)} for s in jobs.jobs_for(me)]
    return render(request, "jobs.html", me=me, jobs=rows)


@router.get("/jobs/{job}")
def task_page(request: Request, job: str, me: Me) -> HTMLResponse:
    """The task this worker holds in the job; else a page to start (a GET never leases:
    a link or a cross-site GET cannot take tasks on someone's behalf)."""
    from loopworks.labeling.progress import my_answer_count

    jobs = _jobs(request)
    task = jobs.current_task(job, me)
    spec = jobs.job(job)
    context: dict[str, Any] = {"me": me, "spec": spec, "task": task,
                               "mine": my_answer_count(jobs, job, me)}
    if task is None:
        if jobs.has_work(job, me):
            return render(request, "start.html", **context)
        return render(request, "done.html", notice=_next_batch_notice(request, spec), **context)
    flow = services(request).review.flow_for_job(job) if not spec.template else None
    if spec.template or flow is None:
        # One rendering path: every labeling job's page is a template with crowd-html
        # elements, its own or its task type's built-in one. A review flow's built-in page
        # (the model's prediction to agree with or correct) is the exception.
        return _custom_form_page(request, spec, task, context)
    shortcuts = [(str(i + 1), label) for i, label in enumerate(spec.labels[:9])]
    prediction = task.data.get("prediction") if flow is not None else None
    custom = _custom_task(flow, task) if flow is not None else None
    image = TaskType(task.task_type).is_image
    return render(request, "task.html", shortcuts=shortcuts, image=image,
                  task_data={"source": "" if image else task.source,
                             "labels": spec.labels, "type": task.task_type},
                  flow=flow, prediction=prediction, custom=custom,
                  idempotency_key=secrets.token_urlsafe(16), **context)


#: Where the crowd-html elements are served from (a template's script tag for Amazon's copy
#: is pointed here: nothing loads from outside).
CROWD_ELEMENTS_URL = "/static/crowd/crowd-html-elements.js"
_TEMPLATE_TAGS = re.compile(r"<(script|style)\b", re.IGNORECASE)


def _custom_form_page(request: Request, spec: JobSpec, task: Task,
                      context: dict[str, Any]) -> HTMLResponse:
    """A task as its job's Liquid template renders it, with the item as ``task.input``
    (a job without a template has its task type's built-in one).

    The template is admin content and may carry scripts and styles (Ground Truth's do):
    each tag of the *template's own text* gets this page's nonce before rendering, so they
    run and nothing else does; task input is escaped, and input a template prints raw
    (``skip_autoescape``) never carries the nonce."""
    from loopworks.errors import ValidationError
    from loopworks.labeling.templates import render_template, template_for

    nonce = secrets.token_urlsafe(16)
    text = _TEMPLATE_TAGS.sub(lambda m: f'<{m.group(1)} nonce="{nonce}"',
                              template_for(spec.task_type, spec.template))
    # A review loop's task UI sees the loop's input content as given (A2I's task.input); a
    # labeling job's item the task input its pre-annotation hook made, else the item:
    # taskObject (its source or source-ref), the job's labels and the item's fields.
    loop_input = task.data.get("input") if "human-loop" in task.data else \
        task.data.get(TASK_INPUT_FIELD)
    task_input = loop_input if isinstance(loop_input, dict) else \
        {"labels": spec.labels, **task.data, "taskObject": task.source}
    def grant(uri: str) -> str:  # grant_read_access: a link only this task's holder can open
        return (f"/jobs/{quote(spec.name)}/tasks/{task.item_id}/object?uri="
                f"{quote(uri, safe='')}")

    if TaskType(task.task_type).is_image and "imageUrl" not in task_input:
        task_input["imageUrl"] = grant(task.source) if task.source.startswith("s3://") \
            else f"/jobs/{quote(spec.name)}/tasks/{task.item_id}/image"

    try:
        form = Markup(render_template(text, task_input, elements_url=CROWD_ELEMENTS_URL,
                                      grant_read_access=grant))
        problem = None
    except ValidationError as exc:
        form, problem = None, str(exc)
    return render(request, "task.html", nonce=nonce, custom_form=form, form_page=True,
                  built_in=not spec.template,
                  template_problem=problem, shortcuts=[], image=False, flow=None,
                  prediction=None, custom=None,
                  task_data={"source": "", "labels": spec.labels, "type": task.task_type},
                  idempotency_key=secrets.token_urlsafe(16), **context)


@router.post("/jobs/{job}/next")
def start(request: Request, job: str, me: Me, csrf_token: Annotated[str, Form()] = ""
          ) -> Response:
    """Lease a task (the one already held, if any), then show it."""
    check_csrf(request, csrf_token)
    _jobs(request).next_task(job, me, held_first=True)
    return _redirect(f"/jobs/{quote(job)}")


def _next_batch_notice(request: Request, spec: JobSpec) -> str | None:
    """Nothing to label in an automated-labeling job still in progress with items held
    back: work will be back, once the next round (started here if nobody has yet) or the
    others' open items are done."""
    from loopworks.labeling.jobs import JobStatus

    if (spec.auto_label is None or spec.status is not JobStatus.IN_PROGRESS
            or not spec.counts.get("held")):
        return None
    if services(request).auto_label.start(spec.name):
        return ("The model is choosing the next batch for people: more work will be back "
                "here shortly.")
    return ("More work will open here once the items others are labeling now are done "
            "and the model has chosen the next batch.")


def _custom_task(flow: FlowDefinition, task: Task) -> Markup | None:
    """A flow's own Jinja2 template, rendered in a sandbox with autoescape: its author
    (an admin) writes the markup, every value from the input is escaped, and a value the
    template marks ``|safe`` is sanitised (:func:`_sanitized`). A template that turns
    autoescape off is not rendered."""
    from jinja2 import nodes

    from loopworks.review.flows import TEMPLATES

    if flow.template in TEMPLATES:
        return None
    try:
        parsed = _sandbox.parse(flow.template)
        if any(any(k.key == "autoescape" for k in modifier.options)
               for modifier in parsed.find_all((nodes.EvalContextModifier,))):
            return Markup("<p class='error'>This flow's task template turns autoescape off "
                          "({% autoescape %}), which would show task input as markup; "
                          "mark single values |safe instead (they are sanitised).</p>")
        compiled = _sandbox.from_string(flow.template)
        return Markup(compiled.render(input=task.data.get("input", {}), text=task.source,
                                      prediction=task.data.get("prediction"),
                                      labels=task.data.get("labels")))
    except TemplateError as exc:
        return Markup("<p class='error'>This flow's task template failed: {}</p>").format(
            str(exc))


@router.post("/jobs/{job}/tasks/{item_id}")
async def submit(request: Request, job: str, item_id: ItemId, me: Me) -> Response:
    """Submit the answer from the task form, and lease the next task in the same step.

    The form carries an idempotency key made when the page was shown: a resubmitted form
    (a reload, a flaky connection) is answered from the stored result, not recorded twice.
    """
    form = await request.form()
    check_csrf(request, str(form.get("csrf_token", "")))
    answer: Any
    if form.get("answer_json"):
        try:
            answer = json.loads(str(form["answer_json"]))
        except json.JSONDecodeError:
            answer = None
    else:
        chosen = [str(v) for v in form.getlist("answer")]
        multi = str(form.get("multi", "")) == "1"
        answer = chosen if multi else (chosen[0] if len(chosen) == 1 else None)
    if answer is None or answer == []:
        request.session["flash"] = "Choose a label first (keys 1–9 or click), then submit."
        return _redirect(f"/jobs/{quote(job)}")
    key = str(form.get("idempotency_key") or "") or None
    try:
        receipt = await run_in_threadpool(
            _jobs(request).record_answer, job, item_id, me, answer, then_next=True,
            idempotency_key=key)
    except ConflictError as exc:
        request.session["flash"] = str(exc)
    except LoopworksError as exc:
        if isinstance(exc, PermissionDenied | NotFoundError):
            raise
        request.session["flash"] = f"Not saved: {exc}"
        return _redirect(f"/jobs/{quote(job)}")
    else:
        request.session["flash"] = "Saved." if not receipt.replayed else "Saved (already)."
    return _redirect(f"/jobs/{quote(job)}")


@router.post("/jobs/{job}/tasks/{item_id}/skip")
def skip(request: Request, job: str, item_id: ItemId, me: Me,
         csrf_token: Annotated[str, Form()] = "") -> Response:
    """Give the task back (it goes to someone else) and lease the next one."""
    check_csrf(request, csrf_token)
    jobs = _jobs(request)
    try:
        jobs.skip(job, item_id, me)
        request.session["flash"] = "Skipped."
    except ConflictError as exc:
        request.session["flash"] = str(exc)
    jobs.next_task(job, me, held_first=True)
    return _redirect(f"/jobs/{quote(job)}")


@router.get("/jobs/{job}/tasks/{item_id}/image")
def task_image(request: Request, job: str, item_id: ItemId, me: Me) -> Response:
    """The image of a task the worker holds (nobody else's, nothing else on disk)."""
    task = _jobs(request).current_task(job, me)
    if task is None or task.item_id != item_id or not TaskType(task.task_type).is_image:
        raise NotFoundError(f"no image task {item_id} held by you in job {job!r}",
                            job=job, item_id=item_id)
    path = Path(task.source)
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if not path.is_file() or not media_type.startswith("image/"):
        raise NotFoundError(f"the image of task {item_id} is missing", job=job, item_id=item_id)
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "private"})


def _strings(value: Any) -> Iterator[str]:
    """Every string inside a JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


#: Object types a task page may show inline; anything else is a download (an HTML or SVG
#: object must never run as a page of this site).
_INLINE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp",
                 "audio/", "video/", "text/plain", "application/pdf")


@router.get("/jobs/{job}/tasks/{item_id}/object")
def task_object(request: Request, job: str, item_id: ItemId, me: Me, uri: str) -> Response:
    """An ``s3://`` object of loopworks' object store that the task's input names (what a
    template's ``grant_read_access`` links to): only for the worker holding the task, and
    only objects its input names."""
    task = _jobs(request).current_task(job, me)
    if task is None or task.item_id != item_id:
        raise NotFoundError(f"no task {item_id} held by you in job {job!r}", job=job,
                            item_id=item_id)
    if uri not in {task.source, *_strings(task.data)} or not uri.startswith("s3://"):
        raise PermissionDenied("this task's input does not name that object", job=job,
                               item_id=item_id)
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    objects = services(request).objects
    info = objects.head(bucket, key)
    inline = info.content_type.startswith(_INLINE_TYPES) or (
        info.content_type in ("binary/octet-stream", "application/octet-stream")
        and (mimetypes.guess_type(key)[0] or "").startswith(_INLINE_TYPES))
    media = info.content_type if info.content_type.startswith(_INLINE_TYPES) else (
        mimetypes.guess_type(key)[0] if inline else "application/octet-stream")
    headers = {"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff",
               "Content-Security-Policy": "sandbox", "Content-Length": str(info.size),
               "Content-Disposition": "inline" if inline else "attachment"}
    return StreamingResponse(iterate_in_threadpool(objects.read(info)),
                             media_type=media or "application/octet-stream", headers=headers)


# ----------------------------------------------------------------------- admin
def _admin(me: Me) -> Worker:
    if me.role is not Role.ADMIN:
        raise PermissionDenied(f"worker {me.name!r} ({me.role.value}) may not open admin pages",
                               worker=me.name)
    return me


Admin = Annotated[Worker, Depends(_admin)]


@router.get("/admin/jobs/{job}")
def job_admin(request: Request, job: str, me: Admin) -> HTMLResponse:
    """A job's progress, answers per worker, agreement and label distribution."""
    from loopworks.labeling.progress import dashboard

    board = dashboard(_jobs(request), job)
    peak = max([*board.answer_distribution.values(), *board.consolidated_distribution.values(),
                1])
    rounds = []
    if getattr(board.spec, "auto_label", None):
        rounds = services(request).auto_label.labeler.rounds(job)
    return render(request, "job_admin.html", me=me, board=board, spec=board.spec, peak=peak,
                  rounds=rounds)


@router.get("/admin/jobs/{job}/export")
def export(request: Request, job: str, me: Admin) -> Response:
    """Download the augmented manifest (consolidated now, Ground Truth's shape)."""
    from loopworks.labeling.output import write_output

    jobs = _jobs(request)
    jobs.job(job)  # 404 before any work
    with tempfile.TemporaryDirectory() as tmp:
        summary = write_output(jobs, job, tmp)
        body = Path(summary["manifest"]).read_bytes()
    return Response(body, media_type="application/x-ndjson", headers={
        "Content-Disposition": f'attachment; filename="{quote(job)}.output.manifest"'})


@router.get("/admin/review")
def review_flows(request: Request, me: Admin) -> HTMLResponse:
    """Every review flow with its loops by status."""
    review = services(request).review
    rows = []
    for flow in review.flows():
        try:
            rows.append({"flow": flow, "summary": review.summary(flow.name), "error": None})
        except Exception as exc:  # noqa: BLE001 - one broken flow must not hide the others
            log.exception("summary of flow %r failed", flow.name)
            rows.append({"flow": flow, "summary": None,
                         "error": f"this flow's summary failed: {type(exc).__name__}"})
    return render(request, "review_flows.html", me=me, rows=rows)


@router.get("/admin/review/{flow}")
def review_dashboard(request: Request, flow: str, me: Admin) -> HTMLResponse:
    """A flow's loops by status, share sent to people, model accuracy on reviewed items."""
    review = services(request).review
    spec = review.flow(flow)
    summary = review.summary(flow)
    recent, _ = review.list_human_loops(flow, max_results=50, newest_first=True)
    human = {label: summary["human_labels"].get(label, 0) for label in spec.labels}
    peak = max([*summary["by_status"].values(), *human.values(), 1])
    return render(request, "review_dashboard.html", me=me, flow=spec, summary=summary,
                  recent=recent, human=human, peak=peak)

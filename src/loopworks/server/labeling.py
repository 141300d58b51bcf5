"""JSON API for labeling: my jobs, next task, answers (worker tokens); job admin (admins)."""

from __future__ import annotations

import logging
import mimetypes
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from loopworks.errors import ConflictError, NotFoundError
from loopworks.labeling.jobs import LabelingJobs
from loopworks.labeling.schema import MAX_ID
from loopworks.labeling.tasktypes import TaskType
from loopworks.labeling.workforce import Worker
from loopworks.server.auth import current_worker, require_admin
from loopworks.server.bodies import require_unicode_body
from loopworks.server.errors import error_responses
from loopworks.server.state import services

__all__ = ["router"]

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/labeling", tags=["labeling"], responses=error_responses(401),
                   dependencies=[Depends(current_worker), Depends(require_unicode_body)])
Caller = Annotated[Worker, Depends(current_worker)]
Admin = Annotated[Worker, Depends(require_admin)]
#: An item id in a URL: a positive id the metadata database can hold (larger ones are a 422,
#: not a database error).
ItemId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="the task's item id")]


class AnswerBody(BaseModel):
    """A worker's answer: one label, or several for multi-label jobs."""

    answer: str | list[str] | dict[str, Any] = Field(
        ..., description="label name(s) from the job's label set, or {\"entities\": [...]} / "
        "{\"boundingBoxes\": [...]} for span and box jobs")


class ItemsBody(BaseModel):
    """Items to add to a running job: texts, or objects with ``source`` / ``source-ref``."""

    items: list[str | dict[str, Any]] = Field(..., min_length=1, max_length=100_000)


def _jobs(request: Request) -> LabelingJobs:
    return services(request).labeling


def _task(task: Any) -> dict[str, Any]:
    """What a client needs to show a task. Never the item's other fields (they may hold
    the gold answer) nor an image's path on the server (the image has its own URL)."""
    image = TaskType(task.task_type).is_image
    return {"job": task.job, "item_id": task.item_id,
            "source": None if image else task.source,
            "image_url": f"/api/labeling/jobs/{task.job}/items/{task.item_id}/image"
            if image else None,
            "labels": task.labels, "task_type": task.task_type,
            "instructions": task.instructions, "examples": getattr(task, "examples", []),
            "expires_at": task.expires_at.isoformat()}


@router.get("/jobs")
def my_jobs(request: Request, worker: Caller) -> list[dict[str, Any]]:
    """Jobs of the caller's teams with their counters."""
    return [{"name": s.name, "team": s.team, "labels": s.labels, "task_type": s.task_type.value,
             "status": s.status.value, "workers_per_item": s.workers_per_item,
             "failure_reason": s.failure_reason,
             "deadline_at": s.deadline_at.isoformat() if s.deadline_at else None, **s.counts}
            for s in _jobs(request).jobs_for(worker)]


@router.post("/jobs/{job}/next", response_model=None, responses={
    204: {"description": "No task left for this worker"}, **error_responses(403, 404, 422)})
def next_task(job: str, request: Request, worker: Caller) -> Response | dict[str, Any]:
    """The task the caller holds in this job, else lease the next one (204 when there is
    none left for this worker). Asking again before answering gives the same task, so a
    reply lost on the way (a dropped connection) strands no lease."""
    task = _jobs(request).next_task(job, worker, held_first=True)
    if task is None:  # (a round a restart missed starts now: a follow-up of no task)
        return Response(status_code=204)
    return _task(task)


@router.post("/jobs/{job}/tasks/{item_id}/answer", status_code=201, response_model=None,
             responses={204: {"description": "Recorded; with `?next=true`, no task left"},
                        **error_responses(400, 403, 404, 409, 422)})
def submit(job: str, item_id: ItemId, body: AnswerBody, request: Request, worker: Caller,
           response: Response, next: Annotated[bool, Query()] = False,  # noqa: A002
           idempotency_key: Annotated[str | None, Header(
               max_length=255, description="makes a retry safe: the same key gets the "
               "stored result (with `Idempotent-Replayed: true`) instead of a 409")] = None,
           ) -> dict[str, Any] | Response:
    """Answer a leased task of this job (404 when the job has no such item, 409 when the
    lease expired or is not the caller's). With ``?next=true`` the answer and the next
    lease happen in one transaction and the reply is the next task (204 when none is left):
    half the requests for a labeling client.

    The answer that closes an automated-labeling round starts the next round in the
    background and is not kept waiting for it: until the round opens the next batch, there
    is no task (204) while the job stays in progress."""
    receipt = _jobs(request).record_answer(job, item_id, worker, body.answer, then_next=next,
                                           idempotency_key=idempotency_key)
    headers = {"Idempotent-Replayed": "true"} if receipt.replayed else {}
    response.headers.update(headers)
    if not next:
        return {"status": "recorded"}
    if receipt.next is None:
        return Response(status_code=204, headers=headers)
    return {"status": "recorded", "next": _task(receipt.next)}


@router.get("/jobs/{job}/items/{item_id}/image", response_class=FileResponse, responses={
    200: {"description": "The image", "content": {"image/*": {}}},
    **error_responses(403, 404, 422)})
def image(job: str, item_id: ItemId, request: Request, worker: Caller) -> FileResponse:
    """The image of an item of an image job (team members only)."""
    path = _jobs(request).image_path(job, item_id, worker)
    media_type = mimetypes.guess_type(path.name)[0] or ""
    if not path.is_file() or not media_type.startswith("image/"):
        raise NotFoundError(f"the image of item {item_id} is missing", job=job,
                            item_id=item_id)
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "private"})


@router.post("/jobs/{job}/stop", responses=error_responses(403, 404, 409, 422))
def stop(job: str, request: Request, admin: Admin) -> dict[str, str]:
    """Stop handing out tasks: Stopping while leases are live, then Stopped."""
    return {"status": _jobs(request).stop(job).value}


@router.post("/jobs/{job}/items", status_code=201,
             responses=error_responses(400, 403, 404, 409, 422))
def add_items(job: str, body: ItemsBody, request: Request, admin: Admin) -> dict[str, int]:
    """Add items to a job in progress (409 otherwise; a bad item adds nothing)."""
    records = [i if isinstance(i, str) else (str(i.get("source", i.get("source-ref", ""))), i)
               for i in body.items]
    return {"added": _jobs(request).add_items(job, records)}


@router.get("/jobs/{job}/rounds", responses=error_responses(403, 404, 409, 422))
def auto_label_rounds(job: str, request: Request, admin: Admin) -> dict[str, Any]:
    """The finished automated-labeling rounds of a job, oldest first (404 for an unknown
    job, 409 when the job was not created with automated labeling)."""
    jobs = _jobs(request)
    if jobs.job(job).auto_label is None:
        raise ConflictError(f"job {job!r} was not created with automated labeling "
                            "(--auto-label): it has no rounds", job=job)
    rounds = services(request).auto_label.labeler.rounds(job)
    return {"job": job, "rounds": [r.to_dict() for r in rounds]}


@router.get("/jobs/{job}/webhooks", responses=error_responses(403, 404, 422))
def webhook_deliveries(job: str, request: Request, admin: Admin) -> list[dict[str, Any]]:
    """The job's webhook deliveries: delivered, pending, given up (with the last error)."""
    return _jobs(request).webhook_deliveries(job)

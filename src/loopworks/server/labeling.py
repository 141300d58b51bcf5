"""JSON API for labeling: my jobs, next task, submit an answer (worker tokens)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from loopworks.labeling.workforce import Worker
from loopworks.server.auth import current_worker

__all__ = ["router"]

router = APIRouter(prefix="/api/labeling", tags=["labeling"])


class AnswerBody(BaseModel):
    """A worker's answer: one label, or several for multi-label jobs."""

    answer: str | list[str] | dict[str, Any] = Field(
        ..., description="label name(s) from the job's label set, or {\"entities\": [...]} / "
        "{\"boundingBoxes\": [...]} for span and box jobs")


def _jobs(request: Request) -> Any:
    return request.app.state.labeling


@router.get("/jobs")
def my_jobs(request: Request, worker: Annotated[Worker, Depends(current_worker)]
            ) -> list[dict[str, Any]]:
    """Jobs of the caller's teams with their counters."""
    return [{"name": s.name, "team": s.team, "labels": s.labels, "task_type": s.task_type.value,
             "status": s.status.value, "workers_per_item": s.workers_per_item, **s.counts}
            for s in _jobs(request).jobs_for(worker)]


@router.post("/jobs/{job}/next", response_model=None)
def next_task(job: str, request: Request,
              worker: Annotated[Worker, Depends(current_worker)]) -> Response | dict[str, Any]:
    """Lease the next task (204 when there is none left for this worker)."""
    task = _jobs(request).next_task(job, worker)
    if task is None:
        return Response(status_code=204)
    return {"job": task.job, "item_id": task.item_id, "source": task.source,
            "labels": task.labels, "task_type": task.task_type,
            "instructions": task.instructions, "expires_at": task.expires_at.isoformat()}


@router.post("/jobs/{job}/tasks/{item_id}/answer", status_code=201)
def submit(job: str, item_id: int, body: AnswerBody, request: Request,
           worker: Annotated[Worker, Depends(current_worker)]) -> dict[str, str]:
    """Answer a leased task (409 when the lease expired or is not the caller's)."""
    _jobs(request).submit(job, item_id, worker, body.answer)
    settle_review(request, job, item_id)
    return {"status": "recorded"}


def settle_review(request: Request, job: str, item_id: int) -> None:
    """An answer on a review flow's task may complete its human loop: settle it now, so
    the loop's status, output document and webhooks do not wait for the next read."""
    review = request.app.state.review
    flow = review.flow_for_job(job)
    if flow is not None:
        review.settle(flow.name, item_ids=[item_id])

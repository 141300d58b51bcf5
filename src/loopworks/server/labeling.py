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

    answer: str | list[str] = Field(..., description="label name(s) from the job's label set")


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
    return {"status": "recorded"}

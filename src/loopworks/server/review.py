"""JSON API for human review: flow definitions and human loops (admins and services)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel

from loopworks.labeling.workforce import Worker
from loopworks.review.flows import FlowDefinition, HumanReview
from loopworks.server.auth import require_admin
from loopworks.server.bodies import require_unicode_body
from loopworks.server.errors import error_responses
from loopworks.server.state import services

__all__ = ["router"]

router = APIRouter(prefix="/api/review", tags=["review"],
                   dependencies=[Depends(require_admin), Depends(require_unicode_body)],
                   responses=error_responses(401, 403))
Admin = Annotated[Worker, Depends(require_admin)]


class StartBody(BaseModel):
    """StartHumanLoop: a name unique in the flow and the input (text + probabilities)."""

    name: str
    input_content: dict[str, Any]


def _review(request: Request) -> HumanReview:
    return services(request).review


def _flow_dict(flow: FlowDefinition) -> dict[str, Any]:
    data = asdict(flow)
    data.pop("webhook_secret", None)  # never echoed back
    data["job"] = flow.job_name
    return data


@router.post("/flows", status_code=201, responses=error_responses(400, 404, 409, 422))
def create_flow(body: FlowDefinition, request: Request) -> dict[str, Any]:
    """Create a flow definition (and the task queue of its team); the body has
    FlowDefinition's fields, checked by FastAPI for types and by the flow for meaning."""
    return _flow_dict(_review(request).create_flow(body))


@router.get("/flows")
def list_flows(request: Request) -> list[dict[str, Any]]:
    """Every flow definition."""
    return [_flow_dict(f) for f in _review(request).flows()]


@router.get("/flows/{flow}", responses=error_responses(404, 422))
def describe_flow(flow: str, request: Request) -> dict[str, Any]:
    """One flow definition with its summary (loops by status, share sent to people)."""
    review = _review(request)
    return {**_flow_dict(review.flow(flow)), "summary": review.summary(flow)}


@router.delete("/flows/{flow}", status_code=204, responses=error_responses(404, 409, 422))
def delete_flow(flow: str, request: Request) -> Response:
    """Delete a flow with no loops in progress."""
    _review(request).delete_flow(flow)
    return Response(status_code=204)


@router.post("/flows/{flow}/loops", responses={
    201: {"description": "A loop started"}, **error_responses(400, 404, 409, 422)})
def start_loop(flow: str, body: StartBody, request: Request, response: Response
               ) -> dict[str, Any]:
    """StartHumanLoop: 201 when a loop started, 200 when it existed or no condition held."""
    result = _review(request).start_human_loop(body.name, flow, body.input_content)
    response.status_code = 201 if result.reason == "started" else 200
    return {"started": result.started, "reason": result.reason,
            "conditions_fired": result.conditions_fired,
            "loop": result.loop.describe() if result.loop else None}


@router.get("/flows/{flow}/loops", responses=error_responses(404, 422))
def list_loops(flow: str, request: Request,
               status: Annotated[str | None, Query()] = None,
               created_after: Annotated[datetime | None, Query()] = None,
               created_before: Annotated[datetime | None, Query()] = None,
               max_results: Annotated[int, Query(ge=1, le=1000)] = 100,
               next_token: Annotated[str | None, Query()] = None) -> dict[str, Any]:
    """ListHumanLoops with filters and paging."""
    loops, token = _review(request).list_human_loops(
        flow, status=status, created_after=created_after, created_before=created_before,
        max_results=max_results, next_token=next_token)
    return {"HumanLoopSummaries": [loop.describe() for loop in loops], "NextToken": token}


@router.get("/flows/{flow}/loops/{name}", responses=error_responses(404, 422))
def describe_loop(flow: str, name: str, request: Request) -> dict[str, Any]:
    """DescribeHumanLoop."""
    return _review(request).describe_human_loop(name, flow).describe()


@router.post("/flows/{flow}/loops/{name}/stop", responses=error_responses(404, 409, 422))
def stop_loop(flow: str, name: str, request: Request) -> dict[str, Any]:
    """StopHumanLoop."""
    return _review(request).stop_human_loop(name, flow).describe()


@router.delete("/flows/{flow}/loops/{name}", status_code=204,
                responses=error_responses(404, 409, 422))
def delete_loop(flow: str, name: str, request: Request) -> Response:
    """DeleteHumanLoop (Failed, Completed or Stopped loops only)."""
    _review(request).delete_human_loop(name, flow)
    return Response(status_code=204)

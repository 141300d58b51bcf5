"""The review service (:class:`HumanReview`): flow definitions and human loops kept in the
metadata database, model predictions that people review.

A flow definition (A2I's ``CreateFlowDefinition``) names a team, a task template, how many
reviewers look at each input, a time limit per task, an availability lifetime per loop, an
output location and activation conditions. Each flow is backed by one *streaming* labeling
job (``review-<flow>``) of its team, so reviewers get work through the same leases, quotas,
pages and JSON API as labeling: nothing about assignment is built twice. A human loop is
one item of that job plus its own record here (name, status, conditions that fired, output).

Statuses follow A2I: InProgress, Completed, Failed (codes ValidationError, Expired,
InternalError), Stopping, Stopped. Progress is settled lazily: reading a loop (or the page
submitting an answer) completes it when its item has its answers, or fails it as Expired
when its availability lifetime has run out. A completed loop's answers are consolidated and
an output document is written in A2I's layout, ``<output>/<flow>/YYYY/MM/DD/hh/mm/ss/<loop>/
output.json``. Status changes go to the flow's webhooks through the labeling outbox (signed,
retried, at least once).

The values live in :mod:`loopworks.review.definitions` (re-exported here), the tables in
:mod:`loopworks.metadata.tables`, and what a completed loop writes in
:mod:`loopworks.review.output`.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import MISSING, asdict, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from loopworks.clock import utcnow
from loopworks.errors import ConfigurationError, ConflictError, InputError, NotFoundError
from loopworks.labeling import webhooks
from loopworks.labeling.groundtruth import human_answer
from loopworks.labeling.jobs import JobSpec, LabelingJobs
from loopworks.labeling.progress import timeline
from loopworks.labeling.schema import MAX_ID, ItemState, answers, items
from loopworks.labeling.schema import jobs as label_jobs
from loopworks.labeling.transactions import transaction
from loopworks.labeling.workforce import workers
from loopworks.metadata.tables import review_flows as flows
from loopworks.metadata.tables import review_loops as loops
from loopworks.metadata.tables import review_passes as passes
from loopworks.review.conditions import ActivationConditions, Evaluation
from loopworks.review.definitions import (
    MAX_FLOW_LIFETIME_SECONDS,
    NAME_PATTERN,
    OUTPUT_PROTOCOLS,
    TEMPLATES,
    FailureCode,
    FlowDefinition,
    HumanLoop,
    LoopStatus,
    StartResult,
    check_output,
    loop_text,
    prediction_of,
)
from loopworks.review.output import (
    consolidate_review,
    output_document,
    write_output_document,
    write_reviewed_labels,
)

if TYPE_CHECKING:
    from loopworks.featurestore import FeatureStore
    from loopworks.objectstore import ObjectStore

__all__ = ["MAX_FLOW_LIFETIME_SECONDS", "OUTPUT_PROTOCOLS", "FailureCode", "FlowDefinition",
           "HumanLoop", "HumanReview", "LoopStatus", "StartResult", "TEMPLATES", "check_output",
           "consolidate_review"]


def _hash(content: dict[str, Any]) -> str:
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _stored_flow(spec: str) -> FlowDefinition:
    """A stored flow. One stored before today's checks (say a time limit of 1e30) still
    loads as it was, so it can be seen, stopped and deleted instead of breaking every page
    that lists flows."""
    data = json.loads(spec)
    try:
        return FlowDefinition(**data)
    except ConfigurationError:
        flow = object.__new__(FlowDefinition)
        defaults: dict[str, Any] = {}
        for f in fields(FlowDefinition):
            if f.default is not MISSING:
                defaults[f.name] = f.default
            elif f.default_factory is not MISSING:
                defaults[f.name] = f.default_factory()
        flow.__dict__.update({**defaults, **data})
        return flow


class HumanReview:
    """Flow definitions and human loops in the metadata database."""

    def __init__(self, engine: sa.Engine, jobs: LabelingJobs | None = None, *,
                 home: str | Path | None = None, features: FeatureStore | None = None,
                 objects: Callable[[], ObjectStore] | None = None) -> None:
        self.engine = engine
        self.jobs = jobs or LabelingJobs(engine)
        self.home = home  # the feature store's home, for flows that write a feature group
        self._features = features
        self._objects = objects  # the object store, for flows that write their outputs there

    @property
    def features(self) -> FeatureStore:
        """The feature store reviewed labels go to (the home's, opened on first use)."""
        if self._features is None:
            from loopworks.featurestore import FeatureStore

            self._features = FeatureStore(home=self.home, engine=self.engine)
        return self._features

    @contextmanager
    def _tx(self) -> Iterator[sa.Connection]:
        with transaction(self.engine) as conn:
            yield conn

    # ------------------------------------------------------------------- flows
    def create_flow(self, flow: FlowDefinition) -> FlowDefinition:
        """Create a flow and the streaming job that carries its tasks."""
        if flow.template not in TEMPLATES and "{{" not in flow.template:
            raise ConfigurationError(
                f"template {flow.template[:40]!r} is neither a built-in "
                f"({', '.join(TEMPLATES)}) nor a Jinja2 template", setting="template")
        if flow.output_store != "objects":  # the object store's bucket is the caller's care
            check_output(flow.output)
        flow.created_at = utcnow().isoformat()
        with self._tx() as conn:
            if conn.execute(sa.select(flows.c.id).where(flows.c.name == flow.name)).first():
                raise ConflictError(f"flow definition {flow.name!r} already exists",
                                    flow=flow.name)
        spec = JobSpec(flow.job_name, flow.team, flow.labels, task_type=flow.task_type,
                       instructions=flow.description or flow.title,
                       workers_per_item=flow.task_count,
                       time_limit_seconds=flow.time_limit_seconds,
                       availability_lifetime_seconds=100 * 365 * 24 * 3600,
                       webhooks=flow.webhooks, webhook_secret=flow.webhook_secret,
                       streaming=True, roles=["reviewer"], template=flow.task_ui)
        self.jobs.create_streaming_job(spec)
        with self._tx() as conn:
            conn.execute(flows.insert().values(name=flow.name, spec=json.dumps(asdict(flow)),
                                               evaluated=0, activated=0, created_at=utcnow()))
        return flow

    def flow(self, name: str) -> FlowDefinition:
        """A flow definition by name."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(flows).where(flows.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"no flow definition {name!r}", flow=name)
        return _stored_flow(row.spec)

    def flows(self) -> list[FlowDefinition]:
        """Every flow definition, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(flows.c.spec).order_by(flows.c.id)).scalars().all()
        return [_stored_flow(s) for s in rows]

    def flow_for_job(self, job: str) -> FlowDefinition | None:
        """The flow a labeling job carries, if it is one's."""
        if not job.startswith("review-"):
            return None
        try:
            return self.flow(job.removeprefix("review-"))
        except NotFoundError:
            return None

    def delete_flow(self, name: str) -> None:
        """Delete a flow, its loops and its job (refused while loops are in progress)."""
        self.flow(name)
        with self._tx() as conn:
            flow_id = conn.execute(sa.select(flows.c.id).where(flows.c.name == name)).scalar()
            busy = conn.execute(sa.select(sa.func.count()).select_from(loops).where(
                loops.c.flow_id == flow_id, loops.c.status == LoopStatus.IN_PROGRESS.value)
            ).scalar_one()
            if busy:
                raise ConflictError(f"flow {name!r} has {busy} loops in progress; stop them "
                                    "first", flow=name)
            conn.execute(loops.delete().where(loops.c.flow_id == flow_id))
            conn.execute(passes.delete().where(passes.c.flow_id == flow_id))
            conn.execute(flows.delete().where(flows.c.id == flow_id))
        self.jobs.delete_job(f"review-{name}")

    # ------------------------------------------------------------------- loops
    def start_human_loop(self, name: str, flow: str, input_content: dict[str, Any]
                         ) -> StartResult:
        """Evaluate the flow's conditions on the input and start a loop when they hold.

        Repeating a call with the same name and content returns the existing loop; the same
        name with other content is a ConflictError.
        """
        return self.start_human_loops(flow, [(name, input_content)])[0]

    def start_human_loops(self, flow: str, inputs: Sequence[tuple[str, dict[str, Any]]]
                          ) -> list[StartResult]:
        """start_human_loop for many inputs at once: one vectorised evaluation of the
        conditions, one transaction for the loops that start."""
        spec = self.flow(flow)
        for name, content in inputs:
            if not isinstance(name, str) or not NAME_PATTERN.match(name):
                raise ConfigurationError(f"invalid human loop name {name!r}: 1-63 lower-case "
                                         "letters, digits and '-'", setting="name")
            if not isinstance(content, dict):
                raise InputError(f"loop {name}: the input content must be a JSON object",
                                 field="input_content")
        if len({name for name, _ in inputs}) != len(inputs):
            repeated = sorted(n for n, k in Counter(n for n, _ in inputs).items() if k > 1)
            raise ConfigurationError(f"human loop names must differ within one call; "
                                     f"repeated: {', '.join(repeated[:10])}", setting="name")
        custom = bool(spec.task_ui)
        # A task UI shows the input as it likes: the model's probabilities are needed only
        # by activation conditions, and then over the flow's labels.
        conditioned = bool(spec.activation_conditions and
                           spec.activation_conditions.get("Conditions"))
        predictions: list[dict[str, Any] | None] = [
            prediction_of(c, spec.labels) if not custom or conditioned
            or (spec.labels and "probabilities" in c) else None for _, c in inputs]
        texts = [loop_text(c, required=not custom) for _, c in inputs]
        if all(p is not None for p in predictions):
            probs = np.array([[p["probabilities"][c] for c in spec.labels]
                              for p in predictions if p is not None])
            conditions = ActivationConditions(spec.activation_conditions, spec.labels)
            evaluation = conditions.evaluate(probs.reshape(len(inputs), len(spec.labels)),
                                             spec.labels, flow=flow,
                                             contents=[c for _, c in inputs])
        else:  # no conditions: every input goes to people
            evaluation = Evaluation(np.ones(len(inputs), dtype=bool),
                                    [["(no conditions: always)"] for _ in inputs])
        hashes = [_hash(c) for _, c in inputs]
        now = utcnow()
        results: list[StartResult | None] = [None] * len(inputs)
        with self._tx() as conn:
            flow_id = conn.execute(sa.select(flows.c.id).where(flows.c.name == flow)).scalar()
            names = [n for n, _ in inputs]
            existing = {r.name: r for r in conn.execute(sa.select(loops).where(
                loops.c.flow_id == flow_id, loops.c.name.in_(names)))} if inputs else {}
            passed = dict(conn.execute(sa.select(passes.c.name, passes.c.content_hash).where(
                passes.c.flow_id == flow_id, passes.c.name.in_(names))).all()) \
                if inputs else {}
            fresh, new_passes = [], []
            for i, (name, _content) in enumerate(inputs):
                if name in passed:
                    if passed[name] != hashes[i]:
                        raise ConflictError(f"input {name!r} of flow {flow!r} was evaluated "
                                            "before with other content", loop=name, flow=flow)
                    results[i] = StartResult(False, None, [], "evaluated before: no "
                                             "activation condition held")
                elif name in existing:
                    row = existing[name]
                    if row.content_hash != hashes[i]:
                        raise ConflictError(f"human loop {name!r} of flow {flow!r} exists with "
                                            "other input content", loop=name, flow=flow)
                    loop = self._loop(row, flow)
                    results[i] = StartResult(True, loop, loop.conditions_fired, "exists")
                elif not evaluation.activated[i]:
                    results[i] = StartResult(False, None, [], "no activation condition held")
                    new_passes.append({"flow_id": flow_id, "name": name,
                                       "content_hash": hashes[i]})
                else:
                    fresh.append(i)
            if new_passes:
                conn.execute(passes.insert(), new_passes)
            conn.execute(flows.update().where(flows.c.id == flow_id).values(
                evaluated=flows.c.evaluated + len(new_passes) + len(fresh),
                activated=flows.c.activated + len(fresh)))
            if fresh:
                records = [(texts[i], {"source": texts[i], "human-loop": inputs[i][0],
                                       "prediction": predictions[i],
                                       "input": inputs[i][1]}) for i in fresh]
                item_ids = self.jobs.append_items_in(conn, spec.job_name, records)
                expires = now + timedelta(seconds=spec.availability_lifetime_seconds)
                conn.execute(loops.insert(), [{
                    "flow_id": flow_id, "name": inputs[i][0],
                    "status": LoopStatus.IN_PROGRESS.value, "content_hash": hashes[i],
                    "input_content": json.dumps(inputs[i][1], default=str),
                    "conditions_fired": json.dumps(evaluation.fired[i]),
                    "item_id": item_id, "created_at": now, "expires_at": expires}
                    for i, item_id in zip(fresh, item_ids, strict=True)])
                for i in fresh:
                    loop = HumanLoop(inputs[i][0], flow, LoopStatus.IN_PROGRESS, now,
                                     inputs[i][1], evaluation.fired[i])
                    results[i] = StartResult(True, loop, evaluation.fired[i], "started")
                self._notify(conn, spec, [inputs[i][0] for i in fresh],
                             LoopStatus.IN_PROGRESS, now)
        return [r for r in results if r is not None]

    def _loop(self, row: Any, flow: str) -> HumanLoop:
        return HumanLoop(
            row.name, flow, LoopStatus(row.status), row.created_at,
            json.loads(row.input_content), json.loads(row.conditions_fired), row.failure_code,
            row.failure_reason, row.output_uri,
            row.completed_at if row.completed_at else None,
            json.loads(row.result) if row.result else None, row.item_id)

    def describe_human_loop(self, name: str, flow: str) -> HumanLoop:
        """One loop, settled first (completed or expired if it is due)."""
        self.settle(flow)
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(loops).join(flows, flows.c.id == loops.c.flow_id)
                               .where(flows.c.name == flow, loops.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"no human loop {name!r} in flow {flow!r}", loop=name,
                                flow=flow)
        return self._loop(row, flow)

    def list_human_loops(self, flow: str | None = None, *, status: str | None = None,
                         created_after: datetime | None = None,
                         created_before: datetime | None = None, max_results: int = 100,
                         next_token: str | None = None, newest_first: bool = False
                         ) -> tuple[list[HumanLoop], str | None]:
        """Loops filtered by flow, status and creation time, a page at a time.

        Returns the page and the token for the next one (None on the last page).
        """
        if not 1 <= max_results <= 1000:
            raise ConfigurationError("max_results must be 1-1000", setting="max_results")
        if status is not None and status not in {s.value for s in LoopStatus}:
            raise ConfigurationError(f"unknown status {status!r}",
                                     valid_values=[s.value for s in LoopStatus],
                                     setting="status")
        for name in ([flow] if flow else [f.name for f in self.flows()]):
            self.settle(name)
        query = sa.select(loops, flows.c.name.label("flow_name")).join(
            flows, flows.c.id == loops.c.flow_id)
        if flow:
            self.flow(flow)
            query = query.where(flows.c.name == flow)
        if status:
            query = query.where(loops.c.status == status)
        if created_after:
            query = query.where(loops.c.created_at >= created_after)
        if created_before:
            query = query.where(loops.c.created_at < created_before)
        if next_token:
            try:
                cursor = int(next_token)
            except ValueError:
                cursor = -1
            if not 0 <= cursor <= MAX_ID:
                raise ConfigurationError("invalid next_token: pass the NextToken a previous "
                                         "page returned", setting="next_token")
            query = query.where(loops.c.id < cursor if newest_first else loops.c.id > cursor)
        query = query.order_by(loops.c.id.desc() if newest_first else loops.c.id)
        with self.engine.connect() as conn:
            rows = conn.execute(query.limit(max_results + 1)).all()
        more = len(rows) > max_results
        rows = rows[:max_results]
        token = str(rows[-1].id) if more and rows else None
        return [self._loop(r, r.flow_name) for r in rows], token

    def flows_of_loop(self, name: str) -> list[str]:
        """The flows that have a loop of this name (A2I names loops uniquely per account,
        so a loop started over /aws is found by its name alone)."""
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(flows.c.name).join(
                loops, loops.c.flow_id == flows.c.id).where(loops.c.name == name)
                .order_by(flows.c.name)).scalars())

    def stop_human_loop(self, name: str, flow: str) -> HumanLoop:
        """Stop a loop in progress: Stopping, its task withdrawn, then Stopped."""
        loop = self.describe_human_loop(name, flow)
        if loop.status is not LoopStatus.IN_PROGRESS:
            raise ConflictError(f"human loop {name!r} is {loop.status.value}; only loops in "
                                "progress can be stopped", loop=name, status=loop.status.value)
        spec = self.flow(flow)
        now = utcnow()
        self._set(flow, name, LoopStatus.STOPPING, now, expect=LoopStatus.IN_PROGRESS)
        if loop.item_id is not None:
            self.jobs.fail_items(spec.job_name, [loop.item_id], "the human loop was stopped")
        self._set(flow, name, LoopStatus.STOPPED, now, expect=LoopStatus.STOPPING)
        return self.describe_human_loop(name, flow)

    def delete_human_loop(self, name: str, flow: str) -> None:
        """Delete a Failed, Completed or Stopped loop (its output documents stay)."""
        loop = self.describe_human_loop(name, flow)
        if loop.status not in (LoopStatus.FAILED, LoopStatus.COMPLETED, LoopStatus.STOPPED):
            raise ConflictError(f"human loop {name!r} is {loop.status.value}; only Failed, "
                                "Completed or Stopped loops can be deleted", loop=name,
                                status=loop.status.value)
        with self._tx() as conn:
            flow_id = conn.execute(sa.select(flows.c.id).where(flows.c.name == flow)).scalar()
            conn.execute(loops.delete().where(loops.c.flow_id == flow_id, loops.c.name == name))

    def _set(self, flow: str, name: str, status: LoopStatus, now: datetime, *,
             expect: LoopStatus, **values: Any) -> bool:
        spec = self.flow(flow)
        with self._tx() as conn:
            flow_id = conn.execute(sa.select(flows.c.id).where(flows.c.name == flow)).scalar()
            changed = conn.execute(loops.update().where(
                loops.c.flow_id == flow_id, loops.c.name == name,
                loops.c.status == expect.value).values(status=status.value, **values)).rowcount
            if changed:
                self._notify(conn, spec, [name], status, now, values.get("failure_code"))
        return bool(changed)

    def _notify(self, conn: sa.Connection, spec: FlowDefinition, names: Sequence[str],
                status: LoopStatus, now: datetime, code: str | None = None) -> None:
        if not spec.webhooks:
            return
        job_id = conn.execute(sa.select(label_jobs.c.id).where(
            label_jobs.c.name == spec.job_name)).scalar_one()
        for name in names:
            webhooks.enqueue(conn, int(job_id), spec.webhooks, "human-loop.status", {
                "event": "human-loop.status", "flow": spec.name, "humanLoopName": name,
                "status": status.value, "at": now.isoformat(),
                **({"failureCode": code} if code else {})}, now)
        self.jobs.webhooks.wake()

    # ---------------------------------------------------------------- settling
    def answered(self, job: str, item_id: int) -> None:
        """Follow-up of every answer (:mod:`loopworks.labeling.followups`): one on a flow's
        task may complete its human loop, so settle that loop now; its status, output
        document and webhooks then do not wait for the next read."""
        flow = self.flow_for_job(job)
        if flow is not None:
            self.settle(flow.name, item_ids=[item_id])

    def settle(self, flow: str, now: datetime | None = None, *,
               item_ids: Sequence[int] | None = None) -> dict[str, int]:
        """Complete loops whose task has its answers; fail loops past their lifetime.
        ``item_ids`` limits the work to the loops of those tasks (after an answer)."""
        spec = self.flow(flow)
        now = now or utcnow()
        with self.engine.connect() as conn:
            flow_id = conn.execute(sa.select(flows.c.id).where(flows.c.name == flow)).scalar()
            query = (sa.select(loops.c.name, loops.c.item_id, loops.c.expires_at,
                               items.c.state, loops.c.created_at, loops.c.input_content,
                               loops.c.conditions_fired)
                     .join(items, items.c.id == loops.c.item_id)
                     .where(loops.c.flow_id == flow_id,
                            loops.c.status == LoopStatus.IN_PROGRESS.value))
            if item_ids is not None:
                query = query.where(loops.c.item_id.in_(list(item_ids)))
            open_rows = conn.execute(query).all()
        done = [r for r in open_rows if r.state == ItemState.LABELED]
        expired = [r for r in open_rows if r.state == ItemState.OPEN
                   and r.expires_at <= now]
        failed = [r for r in open_rows if r.state == ItemState.FAILED]
        if expired:
            self.jobs.fail_items(spec.job_name, [r.item_id for r in expired],
                                 "the human loop's availability lifetime ran out")
            for r in expired:
                self._set(flow, r.name, LoopStatus.FAILED, now, expect=LoopStatus.IN_PROGRESS,
                          failure_code=FailureCode.EXPIRED.value,
                          failure_reason="not reviewed within the availability lifetime of "
                          f"{spec.availability_lifetime_seconds} s", completed_at=now)
        for r in failed:
            self._set(flow, r.name, LoopStatus.FAILED, now, expect=LoopStatus.IN_PROGRESS,
                      failure_code=FailureCode.INTERNAL_ERROR.value,
                      failure_reason="its task was withdrawn", completed_at=now)
        if done:
            given = self._answers([r.item_id for r in done])
            finished = [self._complete(spec, r, given.get(r.item_id, []), now) for r in done]
            if spec.feature_group:
                write_reviewed_labels(self.features, spec,
                                      [f for f in finished if f is not None], now)
        return {"completed": len(done), "expired": len(expired), "failed": len(failed)}

    def _answers(self, item_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(answers, workers.c.name.label("worker_name"))
                .join(workers, workers.c.id == answers.c.worker_id, isouter=True)
                .where(answers.c.item_id.in_(item_ids)).order_by(answers.c.id)).all()
        out: dict[int, list[dict[str, Any]]] = {}
        for r in rows:
            out.setdefault(r.item_id, []).append(human_answer(
                json.loads(r.answer), r.worker_name, r.accepted_at, r.submitted_at))
        return out

    def _complete(self, spec: FlowDefinition, row: Any, given: list[dict[str, Any]],
                  now: datetime) -> dict[str, Any] | None:
        content = json.loads(row.input_content)
        prediction = prediction_of(content, spec.labels) \
            if not spec.task_ui or (spec.labels and "probabilities" in content) else None
        result = consolidate_review(spec.task_type, [g["answerContent"] for g in given],
                                    prediction["label"] if prediction else "")
        if prediction is not None:
            result["modelLabel"] = prediction["label"]
            result["modelConfidence"] = round(prediction["confidence"], 6)
            if "label" in result:
                result["agreesWithModel"] = result["label"] == prediction["label"]
        created = row.created_at
        document = output_document(spec, row.name, content, given, result,
                                   json.loads(row.conditions_fired), created, now)
        try:
            uri = write_output_document(
                spec, row.name, created, document,
                self._objects() if self._objects is not None else None)
        except Exception as exc:  # noqa: BLE001 - any failure: the answers stay, the loop
            # says why it has no output, and reading other loops goes on
            self._set(spec.name, row.name, LoopStatus.FAILED, now,
                      expect=LoopStatus.IN_PROGRESS,
                      failure_code=FailureCode.INTERNAL_ERROR.value,
                      failure_reason=f"could not write the output document to "
                      f"{spec.output}: {exc}", result=json.dumps(result), completed_at=now)
            return None
        if not self._set(spec.name, row.name, LoopStatus.COMPLETED, now,
                         expect=LoopStatus.IN_PROGRESS, output_uri=uri,
                         result=json.dumps(result), completed_at=now):
            return None  # another process completed it first
        return {"loop": row.name, "content": content, "result": result,
                "reviewers": [g["workerId"] for g in given]}

    # -------------------------------------------------------------- dashboard
    def summary(self, flow: str) -> dict[str, Any]:
        """Loops by status, share sent to people, model-vs-reviewer agreement."""
        self.settle(flow)
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(flows).where(flows.c.name == flow)).one()
            counts: dict[str, int] = {status: n for status, n in conn.execute(
                sa.select(loops.c.status, sa.func.count()).where(loops.c.flow_id == row.id)
                .group_by(loops.c.status))}
            completed = conn.execute(sa.select(loops.c.result, loops.c.completed_at).where(
                loops.c.flow_id == row.id, loops.c.status == LoopStatus.COMPLETED.value)
            ).all()
        parsed = [json.loads(r.result) for r in completed if r.result]
        judged = [r for r in parsed if "agreesWithModel" in r]
        agree = sum(r["agreesWithModel"] for r in judged)
        human = Counter(r["label"] for r in judged)
        return {
            "flow": flow, "evaluated": int(row.evaluated), "activated": int(row.activated),
            "human_share": row.activated / row.evaluated if row.evaluated else None,
            "by_status": {s.value: int(counts.get(s.value, 0)) for s in LoopStatus},
            "reviewed": len(judged),
            "model_accuracy_on_reviewed": agree / len(judged) if judged else None,
            "human_labels": dict(human),
            "agree": agree, "corrected": len(judged) - agree,
            "timeline": timeline([r.completed_at for r in completed if r.completed_at])}

"""The labeling hot path's SQL statements, built once.

On SQLite, building a SQLAlchemy expression costs more than running it; a prebuilt
statement with bound parameters also skips the compiled-cache key walk. Parameters are named
``b_*`` so they never clash with column names in INSERT/UPDATE.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from loopworks.labeling.schema import ItemState, answers, items, jobs, leases, skips

__all__ = ["Q"]


def _b(name: str) -> Any:
    return sa.bindparam(name)


class Q:
    """next_task's and submit's statements."""

    job_row = sa.select(jobs.c.id, jobs.c.name, jobs.c.team, jobs.c.spec, jobs.c.status
                        ).where(jobs.c.name == _b("b_name"))
    # Open items with room, most-answered first, that this worker has not answered,
    # skipped or leased. The walk follows ``ix_label_items_open``; each NOT EXISTS is one
    # primary-key or unique-index probe per item passed over.
    candidate = (sa.select(items.c.id, items.c.source, items.c.data)
                 .where(items.c.job_id == _b("b_job"), items.c.state == ItemState.OPEN,
                        items.c.answers + items.c.leases < items.c.wanted,
                        *[~sa.exists().where(t.c.item_id == items.c.id,
                                             t.c.worker_id == _b("b_worker"))
                          for t in (leases, answers, skips)])
                 .order_by(items.c.answers.desc(), items.c.seq).limit(1))
    candidate_pg = candidate.with_for_update(of=items, skip_locked=True)
    # A job with a cap on the items people work on at once (Ground Truth's
    # MaxConcurrentTaskCount): items in flight have a lease or an answer and want more.
    in_flight = sa.or_(items.c.leases > 0, items.c.answers > 0)
    items_in_flight = sa.select(sa.func.count()).select_from(items).where(
        items.c.job_id == _b("b_job"), items.c.state == ItemState.OPEN, in_flight)
    candidate_in_flight = candidate.where(in_flight)
    candidate_in_flight_pg = candidate_in_flight.with_for_update(of=items, skip_locked=True)
    # The worker's live lease in a job, oldest first (``ix_label_leases_worker``).
    held = (sa.select(items.c.id, items.c.source, items.c.data, leases.c.expires_at)
            .join(leases, leases.c.item_id == items.c.id)
            .where(leases.c.job_id == _b("b_job"), leases.c.worker_id == _b("b_worker"),
                   leases.c.expires_at >= _b("b_now"))
            .order_by(leases.c.accepted_at).limit(1))
    lease_insert = leases.insert()
    lease_taken = items.update().where(items.c.id == _b("b_item")).values(
        leases=items.c.leases + 1)
    # Every lookup by item id is scoped to the job in the request: an item id of another
    # job (that the worker may hold too) is not this job's task.
    lease_of = sa.select(leases).where(leases.c.item_id == _b("b_item"),
                                       leases.c.worker_id == _b("b_worker"),
                                       leases.c.job_id == _b("b_job"))
    lease_of_pg = lease_of.with_for_update()
    lease_delete = leases.delete().where(leases.c.item_id == _b("b_item"),
                                         leases.c.worker_id == _b("b_worker"),
                                         leases.c.job_id == _b("b_job"))
    answer_insert = answers.insert()
    # One statement records the answer on the item and, unless adaptive redundancy has to
    # look at the answers first, labels it when it has what it wanted.
    answered = items.update().where(items.c.id == _b("b_item")).values(
        answers=items.c.answers + 1, leases=items.c.leases - 1,
        state=sa.case((sa.and_(_b("b_final"), items.c.answers + 1 >= items.c.wanted),
                       ItemState.LABELED), else_=items.c.state),
    ).returning(items.c.answers, items.c.wanted, items.c.seq, items.c.state)
    item_source = sa.select(items.c.source).where(items.c.id == _b("b_item"),
                                                  items.c.job_id == _b("b_job"))
    job_status = sa.select(jobs.c.status).where(jobs.c.id == _b("b_job"))
    open_item = sa.select(items.c.id).where(items.c.job_id == _b("b_job"),
                                            items.c.state == ItemState.OPEN).limit(1)
    held_item = sa.select(items.c.id).where(items.c.job_id == _b("b_job"),
                                            items.c.state == ItemState.HELD).limit(1)

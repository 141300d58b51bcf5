"""The labeling tables (declared with every other table in
:mod:`loopworks.metadata.tables`) and what their values mean.

Item states: ``OPEN`` (still wants answers), ``LABELED`` (has its answers), ``FAILED`` (nobody
finished it before the job's deadline; kept with its reason), ``HELD`` (automated labeling
keeps it back: the model may label it, or a later round hands it to people; never handed
out while held). ``wanted`` is how many answers an item wants now: the job's workers per
item, raised one at a time by adaptive redundancy.
"""

from __future__ import annotations

from loopworks.metadata.tables import (
    answers,
    auto_items,
    auto_rounds,
    idempotency,
    items,
    ix_items_open,
    jobs,
    leases,
    machine_labels,
    outbox,
    skips,
)

__all__ = ["MAX_ID", "ItemState", "answers", "auto_items", "auto_rounds", "idempotency", "items",
           "ix_items_open", "jobs", "leases", "machine_labels", "outbox", "skips"]

#: The largest id an ``sa.Integer`` column holds on every backend (32-bit on PostgreSQL): an
#: id from outside past it names nothing, and PostgreSQL refuses to even compare with it.
MAX_ID = 2**31 - 1


class ItemState:
    """Values of ``label_items.state``."""

    OPEN = 0
    LABELED = 1
    FAILED = 2
    HELD = 3

"""Time in loopworks: aware datetimes in UTC, everywhere.

Every timestamp loopworks keeps or compares is timezone-aware UTC: :func:`utcnow` makes one,
:func:`as_utc` turns any datetime into one (a naive value is taken as UTC, the way loopworks
has always written them). Database columns hand them back aware too
(:class:`loopworks.metadata.tables.UtcDateTime`), so no code needs to patch a naive value.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["as_utc", "utcnow"]


def utcnow() -> datetime:
    """Now, aware, in UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime | str) -> datetime:
    """The same instant as an aware UTC datetime (naive values are taken as UTC).

    Takes a ``datetime`` (a pandas ``Timestamp`` too, returned as a plain ``datetime``) or
    an ISO 8601 text such as ``2024-05-01`` or ``2024-05-01T12:00:00+02:00``.
    """
    when: datetime
    if isinstance(value, str):
        import pandas as pd

        when = pd.Timestamp(value).to_pydatetime()
    elif hasattr(value, "to_pydatetime"):  # pandas.Timestamp
        when = value.to_pydatetime()
    else:
        when = value
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)

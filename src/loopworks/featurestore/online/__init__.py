"""The online store: the latest record per id, by event time, for low-latency reads.

One small contract, :class:`OnlineStore`, with an embedded default (:class:`SQLiteOnlineStore`)
and a server backend (:class:`RedisOnlineStore`), chosen by URL in :func:`open_online_store`.

Semantics shared by both backends (one contract test suite runs against each):

* **Upsert if newer.** A record is stored unless the stored one for its id has a strictly
  newer event time; on equal event times the later write wins. Within one table the row with
  the greatest event time per id wins (ties: the last row). A table lands atomically.
* **TTL.** A record written with ``ttl_seconds`` expires that many seconds after it was
  *written* (wall clock of the writer), not after its event time. An expired record is gone:
  it is not served and no longer blocks older writes.
* **Soft delete** leaves a tombstone carrying the delete's event time; it is never served,
  never expires, and blocks older writes (a newer write revives the id). **Hard delete**
  removes the record entirely, so an older write arriving afterwards lands again.

Values are kept in their canonical types, never as JSON: scalars natively (SQLite) or as exact
text (Redis); list features as the raw little-endian bytes of their elements (``int32`` token
ids: 4 bytes each, the length implied by the byte size), fixed-length integer lists in a
compact form when smaller (narrowest element width, trailing padding cut; see
``loopworks.featurestore.online.encoding``); lists of strings as a ``uint32`` count,
``uint32`` byte lengths, then the UTF-8 bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qsl

import pyarrow as pa

from loopworks.errors import ConfigurationError
from loopworks.featurestore.definitions import FeatureDefinition
from loopworks.featurestore.online.encoding import Record, redact_url
from loopworks.featurestore.online.redis import RedisOnlineStore
from loopworks.featurestore.online.sqlite import SQLiteOnlineStore

__all__ = ["OnlineStore", "RedisOnlineStore", "SQLiteOnlineStore", "open_online_store"]


@runtime_checkable
class OnlineStore(Protocol):
    """Latest record per id by event time; see the module docstring for the semantics."""

    def write(self, group: str, table: pa.Table, definitions: list[FeatureDefinition], *,
              record_id: str, event_time: str, ttl_seconds: float | None = None,
              before_commit: Callable[[], object] | None = None) -> int:
        """Upsert-if-newer every row of a conformed table, atomically.

        Args:
            group: Feature group name.
            table: Columns exactly the definitions, canonical Arrow types, no null id or
                event time (the output of ``conform_table``).
            definitions: The group's feature definitions.
            record_id: Name of the record identifier feature.
            event_time: Name of the event time feature.
            ttl_seconds: Records expire this long after now; ``None``: never.
            before_commit: Called once the rows are staged and before they become visible;
                if it raises, nothing is written and the exception propagates. Ingest
                waits here for the batch's offline commit, so both stores' writes overlap
                and still land together or not at all.

        Returns:
            How many records were written (not superseded by a newer stored one).
        """
        ...

    def read(self, group: str, ids: Sequence[str], definitions: list[FeatureDefinition],
             features: Sequence[str] | None = None) -> list[Record | None]:
        """Latest records in the order of ``ids``; ``None`` if missing, deleted or expired.

        Values are Python values: lists for list features, UTC datetimes for timestamps.
        ``features`` limits the keys; the record id and event time are always included.
        """
        ...

    def expires_at(self, group: str, record_id: str) -> datetime | None:
        """When a live record's TTL runs out (UTC); None without a TTL or a record."""
        ...

    def delete(self, group: str, record_id: str, event_time: datetime, *, hard: bool,
               definitions: list[FeatureDefinition], record_id_name: str,
               event_time_name: str) -> bool:
        """Delete a record as of ``event_time``.

        Returns:
            ``True`` if applied; ``False`` for a soft delete older than the stored record
            (nothing changes).

        Raises:
            ConflictError: A hard delete older than the stored record.
        """
        ...

    def drop(self, group: str) -> None:
        """Remove every record of the group."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def open_online_store(url: str | None, home: Path) -> OnlineStore:
    """Open the online store named by ``url``.

    Args:
        url: ``None``/empty or ``sqlite:///PATH`` (SQLAlchemy style: ``sqlite:////abs/path``
            or ``sqlite:///relative/path``; ``?synchronous=OFF`` trades crash safety for
            ingest speed) for the embedded store; ``redis://HOST:PORT/DB`` or
            ``rediss://...`` for Redis.
        home: loopworks home; the default SQLite file is ``home / "online.sqlite"``.

    Raises:
        ConfigurationError: Unsupported URL scheme.
        MissingDependencyError: ``redis`` is not installed for a Redis URL.
    """
    if not url or url in ("sqlite://", "sqlite:///"):
        return SQLiteOnlineStore(Path(home) / "online.sqlite")
    if url.startswith("sqlite:///"):
        path, _, query = url.removeprefix("sqlite:///").partition("?")
        options = dict(parse_qsl(query))
        return SQLiteOnlineStore(path or Path(home) / "online.sqlite",
                                 synchronous=options.get("synchronous", "NORMAL"))
    if url.startswith(("redis://", "rediss://")):
        return RedisOnlineStore(url)
    raise ConfigurationError(
        f"unsupported online store URL {redact_url(url)!r}; use sqlite:///PATH (default: "
        "online.sqlite in the loopworks home) or redis://HOST:PORT/DB (rediss:// for TLS)",
        setting="online_store_url", valid_values=["sqlite:///", "redis://", "rediss://"])

"""The feature store: a registry of groups, an online store and an offline store."""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa

from loopworks.errors import ConfigurationError, ConflictError, NotFoundError
from loopworks.featurestore.batching import RecordBatcher
from loopworks.featurestore.definitions import (
    FeatureDefinition,
    FeatureType,
    load_feature_definitions,
)
from loopworks.featurestore.group import FeatureGroup
from loopworks.featurestore.journal import IngestJournal, OfflineSpool
from loopworks.featurestore.registry import FeatureGroupSpec, Registry, validate_name

if TYPE_CHECKING:
    import sqlalchemy as sa

    from loopworks.settings import Settings

__all__ = ["FeatureStore"]


log = logging.getLogger(__name__)

class FeatureStore:
    """Feature groups with an online store (latest per id) and an offline history.

    Args:
        home: loopworks home folder (default: the ``home`` setting: ``LOOPWORKS_HOME`` or
            ``~/.loopworks``).
        database_url: Metadata database (default: the ``database_url`` setting, else
            SQLite in home).
        online_store_url: ``sqlite:///...`` or ``redis://...`` (default: the
            ``online_store_url`` setting, else SQLite in home).
        offline_store_url: Folder or object-store URL for the Delta tables (default: the
            ``offline_store_url`` setting, else ``<home>/offline``).
        settings: Resolved settings to use instead of the arguments above
            (:func:`loopworks.open` passes its own).
        engine: The metadata database's engine, when the caller opened it already.
    """

    def __init__(self, home: str | os.PathLike[str] | None = None, *,
                 database_url: str | None = None, online_store_url: str | None = None,
                 offline_store_url: str | None = None, settings: Settings | None = None,
                 engine: sa.Engine | None = None) -> None:
        from loopworks.metadata import database_url as resolve_db
        from loopworks.metadata import open_engine
        from loopworks.settings import load_settings

        if settings is None:
            settings = load_settings(home=home or None, database_url=database_url or None,
                                     online_store_url=online_store_url or None,
                                     offline_store_url=offline_store_url or None)
        self.home = settings.home
        self.home.mkdir(parents=True, exist_ok=True)
        if engine is None:
            engine = open_engine(resolve_db(self.home, settings.database_url))
        self.registry = Registry(engine)
        self._online_url = settings.online_store_url or None
        self._offline_url = settings.offline_store_url or str(self.home / "offline")
        self._online: Any = None
        self._offline: Any = None
        self._opening = threading.Lock()  # threads' first uses open each backend once
        #: Writes in flight, so a crashed one is finished by the next open of its group.
        self.journal = IngestJournal(self.home / "journal")
        # Specs are read on every online lookup; keep them briefly instead of asking the
        # database each time (changes made through this store drop the cached entry).
        self._specs: dict[str, tuple[float, FeatureGroupSpec]] = {}
        #: Group commit of single-record writes (``put_record``), per group and TTL.
        self.record_batcher = RecordBatcher()
        #: Records online whose offline append comes later (``put_record(offline_later=)``).
        self.spool = OfflineSpool(self.home / "journal" / "spool")
        self.spool_flush_seconds = 0.5
        self._flusher: threading.Thread | None = None
        self._flush_wanted: set[str] = set()
        self._flush_wake = threading.Condition()
        # Held through each flush: a caller that needs the history up to date (ListRecords)
        # waits for a flush the flusher thread has begun, rather than finding nothing to do.
        self._flushing = threading.RLock()
        self._closing = False
        self.spec_cache_seconds = 1.0

    @property
    def online(self) -> Any:
        """The online store backend (opened on first use)."""
        if self._online is None:
            from loopworks.featurestore.online import open_online_store

            with self._opening:
                if self._online is None:
                    self._online = open_online_store(self._online_url, self.home)
        return self._online

    @property
    def offline(self) -> Any:
        """The offline store backend (Delta Lake tables)."""
        if self._offline is None:
            from loopworks.featurestore.offline import DeltaOfflineStore

            with self._opening:
                if self._offline is None:
                    self._offline = DeltaOfflineStore(self._offline_url,
                                                      lock_dir=self.home / "locks")
        return self._offline

    def flush_soon(self, group: str) -> None:
        """Have the group's spooled records appended to its history within
        :attr:`spool_flush_seconds` (by this store's flusher thread, started on first use)."""
        with self._flush_wake:
            self._flush_wanted.add(group)
            if self._flusher is None or not self._flusher.is_alive():
                self._closing = False
                self._flusher = threading.Thread(target=self._flush_loop, daemon=True,
                                                 name="loopworks-spool")
                self._flusher.start()

    def flush_spooled(self) -> int:
        """Append every spooled record of this process to its history now (after a flush
        already under way, whose records are then in the history too)."""
        with self._flushing:
            with self._flush_wake:
                groups, self._flush_wanted = self._flush_wanted, set()
            return sum(self._flush_group(g) for g in sorted(groups))

    def _flush_group(self, group: str) -> int:
        try:
            return FeatureGroup(self, self.registry.get(group)).flush_spool()
        except NotFoundError:
            self.spool.forget(group)  # deleted meanwhile
            return 0
        except Exception:
            log.exception("appending the spooled records of %r to its history failed; "
                          "retrying", group)
            with self._flush_wake:
                self._flush_wanted.add(group)
            return 0

    def _flush_loop(self) -> None:
        while True:
            with self._flush_wake:
                if self._closing:
                    return
                self._flush_wake.wait(self.spool_flush_seconds)
                closing = self._closing
            self.flush_spooled()
            if closing:
                return

    def close(self) -> None:
        """Append what is spooled to the history, then close backend connections."""
        with self._flush_wake:
            self._closing = True
            self._flush_wake.notify_all()
            flusher = self._flusher
        if flusher is not None:
            flusher.join(timeout=60)
        self.flush_spooled()
        if self._online is not None:
            self._online.close()
            self._online = None

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ groups
    def create_feature_group(
        self, name: str, *, record_id: str, event_time: str,
        df: pd.DataFrame | pa.Table | None = None,
        definitions: Sequence[FeatureDefinition] | None = None, description: str = "",
        tags: dict[str, str] | None = None, ttl_seconds: float | None = None,
        transformation: dict[str, Any] | None = None,
    ) -> FeatureGroup:
        """Create a feature group from definitions, or inferred from ``df``.

        Raises:
            ConfigurationError: Bad name, no definitions, or the record id / event time
                feature is missing or of the wrong type.
            ConflictError: A group of that name exists.
        """
        validate_name(name)
        if definitions is None:
            if df is None:
                raise ConfigurationError("give definitions=[...] or df= to infer them from",
                                         feature_group=name)
            definitions = load_feature_definitions(df)
        definitions = list(definitions)
        names = [d.name for d in definitions]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"feature group {name!r}: duplicate feature names",
                                     feature_group=name)
        by_name = {d.name: d for d in definitions}
        for role, feature, allowed in (("record identifier", record_id, {"String", "Integral"}),
                                       ("event time", event_time,
                                        {"Timestamp", "String", "Fractional"})):
            if feature not in by_name:
                raise ConfigurationError(
                    f"feature group {name!r}: {role} feature {feature!r} is not among the "
                    f"features ({', '.join(names)})", feature_group=name, feature=feature)
            if by_name[feature].type.value not in allowed:
                raise ConfigurationError(
                    f"feature group {name!r}: {role} {feature!r} must be "
                    f"{' or '.join(sorted(allowed))}, not {by_name[feature].type_name}",
                    feature_group=name, feature=feature)
        if by_name[record_id].type.value == "Integral":  # ids are strings everywhere
            definitions[names.index(record_id)] = FeatureDefinition(record_id,
                                                                    FeatureType.STRING)
        declared = by_name[event_time].type.value
        if declared != "Timestamp":
            # SageMaker's event times: ISO 8601 text (String) or epoch seconds (Fractional).
            # Both are kept as timestamps (so time travel and point-in-time joins work) and
            # the declared type is remembered for clients that speak SageMaker's types.
            definitions[names.index(event_time)] = FeatureDefinition(
                event_time, FeatureType.TIMESTAMP, description=by_name[event_time].description)
            transformation = {**(transformation or {}), "event_time_type": declared}
        spec = FeatureGroupSpec(name=name, record_id=record_id, event_time=event_time,
                                definitions=definitions, description=description,
                                tags=dict(tags or {}), ttl_seconds=ttl_seconds,
                                transformation=dict(transformation or {}))
        self.registry.create(spec)
        return FeatureGroup(self, spec)

    def get_or_create_feature_group(self, name: str, *, record_id: str, event_time: str,
                                    df: pd.DataFrame | pa.Table, description: str = "",
                                    tags: dict[str, str] | None = None,
                                    transformation: dict[str, Any] | None = None
                                    ) -> FeatureGroup:
        """The group called ``name``, created with features inferred from ``df`` (as
        :meth:`create_feature_group` does) when it does not exist yet.

        An existing group is returned as it is: the other arguments describe a new group
        only. A group another process creates meanwhile is returned too.

        Raises:
            ConfigurationError: As :meth:`create_feature_group`, for a new group.
        """
        try:
            return self.feature_group(name)
        except NotFoundError:
            pass
        try:
            return self.create_feature_group(
                name, record_id=record_id, event_time=event_time, df=df,
                description=description, tags=tags, transformation=transformation)
        except ConflictError:
            return self.feature_group(name)

    def feature_group(self, name: str) -> FeatureGroup:
        """An existing group by name (NotFoundError otherwise).

        Whenever the group's definition is (re)read, writes to it that a dead process left
        half done are finished first (:meth:`FeatureGroup.recover`), so the stores agree
        before anything is served; with nothing to finish this costs one folder listing,
        and the cached path nothing.
        """
        now = time.monotonic()
        cached = self._specs.get(name)
        if cached is None or now - cached[0] > self.spec_cache_seconds:
            spec = self.registry.get(name)
            FeatureGroup(self, dataclasses.replace(spec)).recover()
            cached = (now, spec)
            self._specs[name] = cached
        return FeatureGroup(self, dataclasses.replace(cached[1]))

    def update_spec(self, spec: FeatureGroupSpec) -> FeatureGroupSpec:
        """Save a group's changed description, TTL, feature descriptions or metadata
        (its name, record id and event time never change).

        Raises:
            NotFoundError: No such group.
        """
        saved = self.registry.update(spec)
        self.forget_spec(spec.name)
        return saved

    def forget_spec(self, name: str) -> None:
        """Drop the cached spec of a group that changed (the next read asks the registry)."""
        self._specs.pop(name, None)

    def list_feature_groups(self) -> list[FeatureGroupSpec]:
        """Every group's spec, by name."""
        return self.registry.list()

    def delete_feature_group(self, name: str) -> None:
        """Delete a group with all its data, online and offline."""
        self.registry.get(name)
        self.forget_spec(name)
        self.online.drop(name)
        if self.offline.exists(name):
            self.offline.delete(name)
        self.journal.forget(name)
        self.spool.forget(name)
        self.registry.delete(name)

    def search(self, text: str) -> list[dict[str, Any]]:
        """Find groups and features whose name, description, tags or type mention ``text``.

        Returns:
            Hits as ``{"feature_group", "feature" (or None), "matched": [fields]}``, groups
            before features, by name.
        """
        needle = text.strip().lower()
        if not needle:
            raise ConfigurationError("search needs some text")
        hits: list[dict[str, Any]] = []
        for spec in self.registry.list():
            matched = [field for field, value in (
                ("name", spec.name), ("description", spec.description),
                ("tags", " ".join(f"{k}={v}" for k, v in spec.tags.items())),
            ) if needle in value.lower()]
            if matched:
                hits.append({"feature_group": spec.name, "feature": None, "matched": matched,
                             "description": spec.description})
            for d in spec.definitions:
                matched = [field for field, value in (
                    ("feature", d.name), ("type", d.type_name), ("description", d.description),
                ) if needle in value.lower()]
                if matched:
                    hits.append({"feature_group": spec.name, "feature": d.name,
                                 "type": d.type_name, "matched": matched})
        return hits

    # -------------------------------------------------------------------- SQL
    def query(self, sql: str, *, as_of: datetime | str | None = None,
              output: str = "pandas", out: str | None = None) -> Any:
        """Run SQL over every feature group (each a table by name) with DuckDB.

        Each group ``g`` is visible as ``g`` (the full offline history, with write_time and
        is_deleted) and ``g_latest`` (the latest non-deleted record per id).

        Args:
            sql: The query.
            as_of: See the history as it was at this write time.
            output: ``pandas`` or ``arrow``.
            out: Also write the result to this ``.csv`` or ``.parquet`` file.
        """
        from loopworks.featurestore.sql import run_query

        return run_query(self, sql, as_of=as_of, output=output, out=out)

    def training_set(self, entity_df: pd.DataFrame | pa.Table, features: Sequence[str], *,
                     event_time: str | None = None, **options: Any) -> pd.DataFrame:
        """Point-in-time correct training set (options: see ``featurestore.sql.training_set``).

        For each entity row (record id + event time), the latest feature values at or before
        that time: no leakage from the future. The entity rows' time column is
        ``event_time``, else ``event_time`` when they have one, else the event-time feature
        of a requested group that they carry (``EventTime`` of a SageMaker group).
        """
        from loopworks.featurestore.sql import training_set

        if event_time is None:
            columns = list(entity_df.columns) if isinstance(entity_df, pd.DataFrame) \
                else entity_df.column_names
            event_time = "event_time"
            if event_time not in columns:
                groups = {ref.partition(":")[0] for ref in features}
                carried = [g.event_time for g in self.list_feature_groups()
                           if g.name in groups and g.event_time in columns]
                if carried:
                    event_time = carried[0]
        return training_set(self, entity_df, features, event_time=event_time, **options)

    def dataset(self, group: str, *, features: Sequence[str] | None = None,
                start: datetime | str | None = None, end: datetime | str | None = None,
                recent: int | None = None, include_deleted: bool = False,
                include_duplicates: bool = False, as_of: datetime | str | None = None,
                output: str = "pandas") -> Any:
        """A group's records as a data set, with no entity table (SageMaker's
        DatasetBuilder; what Feast users asked for in feast#1611).

        Args:
            group: The feature group.
            features: The features wanted (default: all); the record id and event time
                always come along.
            start, end: Only records whose event time lies in this range (inclusive).
            recent: Only the N most recent records of each id (after the filters above).
            include_deleted: Keep deletion rows and the records of deleted ids (default:
                an id whose latest row is a deletion is left out, and so are deletion rows).
            include_duplicates: Keep every write of the same id and event time (default: the
                last one written).
            as_of: The history as it was at this write time.
            output: ``pandas`` or ``arrow``.

        Raises:
            NotFoundError: No such group or feature.
            ConfigurationError: ``recent`` below 1.
        """
        from loopworks.featurestore.sql import dataset_query

        spec = self.feature_group(group).spec
        sql, params = dataset_query(spec, features=features, start=start, end=end,
                                    recent=recent, include_deleted=include_deleted,
                                    include_duplicates=include_duplicates)
        from loopworks.featurestore.sql import run_query

        return run_query(self, sql, as_of=as_of, output=output, params=params)

    get_historical_features = training_set

    def get_online_features(self, features: Sequence[str], entity_rows: Sequence[dict[str, Any]]
                            ) -> list[dict[str, Any]]:
        """Feast-style online lookup: ``features=["reviews:sentiment"]`` for entity rows."""
        by_group: dict[str, list[str]] = {}
        for ref in features:
            name, _, feature = ref.partition(":")
            if not feature:
                raise ConfigurationError(f"feature reference {ref!r} must be 'group:feature'")
            by_group.setdefault(name, []).append(feature)
        results = [dict(row) for row in entity_rows]
        for group_name, names in by_group.items():
            group = self.feature_group(group_name)
            key = group.spec.record_id
            if any(key not in row for row in entity_rows):
                raise NotFoundError(f"entity rows need {key!r} for feature group {group_name!r}",
                                    feature_group=group_name, feature=key)
            records = group.batch_get_record([row[key] for row in entity_rows], names)
            for out, record in zip(results, records, strict=True):
                for name in names:
                    out[name] = None if record is None else record.get(name)
        return results

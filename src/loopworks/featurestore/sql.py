"""SQL over the offline store with DuckDB, and point-in-time correct training sets.

Each feature group's Delta table is registered in DuckDB as an Arrow dataset (DuckDB's own
delta extension would download at run time). Training sets use DuckDB's ``ASOF JOIN``: for
every entity row, the latest feature values at or before its event time, never after.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from loopworks.clock import as_utc
from loopworks.errors import ConfigurationError, NotFoundError, ValidationError
from loopworks.featurestore.definitions import EVENT_TIME_TYPE
from loopworks.files import atomic_write, write_table

if TYPE_CHECKING:
    from loopworks.featurestore.pointintime import EncodedIds
    from loopworks.featurestore.store import FeatureStore

__all__ = ["clear_history_cache", "csv_safe", "query_arrow", "run_query", "sql_identifier",
           "training_set", "training_set_from_manifest"]


def sql_identifier(name: str) -> str:
    """A table or column name as SQL needs it: as is when it is a plain identifier, else in
    double quotes (``reviews`` but ``"reviews-fg"``)."""
    return name if re.fullmatch(r"[a-z_][a-z0-9_]*", name) else _quote(name)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _utc(value: datetime | str | None) -> datetime | None:
    return None if value is None else as_utc(value)


def query_arrow(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None
           ) -> pa.Table:
    """Run a query and return Arrow (DuckDB 2 names it to_arrow_table, 1.x arrow)."""
    relation = con.sql(sql, params=params or None)
    if relation is None:  # a statement without a result
        return pa.table({})
    fetch = getattr(relation, "to_arrow_table", None) or relation.arrow
    table = fetch()
    return table if isinstance(table, pa.Table) else table.read_all()


def _connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    return con


def connect_groups(store: FeatureStore, as_of: datetime | str | None = None
                   ) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection where every feature group ``g`` is a table (its offline history
    as of ``as_of``) and ``g_latest`` a view of its latest non-deleted records."""
    con = _connect()
    when = _utc(as_of)
    for spec in store.list_feature_groups():
        if not store.offline.exists(spec.name):
            continue
        con.register(spec.name, store.offline.dataset(spec.name, as_of=when))
        con.execute(
            f"CREATE VIEW {_quote(spec.name + '_latest')} AS SELECT * EXCLUDE (__rn) FROM ("
            f"SELECT *, row_number() OVER (PARTITION BY {_quote(spec.record_id)} ORDER BY "
            f"{_quote(spec.event_time)} DESC, write_time DESC) AS __rn FROM "
            f"{_quote(spec.name)}) WHERE __rn = 1 AND NOT is_deleted")
    return con


def run_query(store: FeatureStore, sql: str, *, as_of: datetime | str | None = None,
              output: str = "pandas", out: str | None = None,
              params: list[Any] | None = None) -> Any:
    """Run SQL with every feature group visible as a table (see ``FeatureStore.query``)."""
    if output not in ("pandas", "arrow"):
        raise ConfigurationError("output must be 'pandas' or 'arrow'", setting="output")
    con = connect_groups(store, as_of)
    try:
        result = query_arrow(con, sql, params)
    except duckdb.Error as exc:
        raise ValidationError(f"SQL error: {str(exc).strip()}", sql=sql) from None
    finally:
        con.close()
    if out:
        _write_result(result, out)
    return result if output == "arrow" else result.to_pandas()


def dataset_query(spec: Any, *, features: Sequence[str] | None, start: datetime | str | None,
                  end: datetime | str | None, recent: int | None, include_deleted: bool,
                  include_duplicates: bool) -> tuple[str, list[Any]]:
    """The SQL (and its parameters) of :meth:`FeatureStore.dataset` over one group."""
    known = [d.name for d in spec.definitions]
    wanted = list(features) if features else known
    for name in wanted:
        spec.definition(name)  # an unknown feature: ConfigurationError naming it
    columns = list(dict.fromkeys([spec.record_id, spec.event_time, *wanted]))
    if include_deleted:
        columns.append("is_deleted")
    if recent is not None and (not isinstance(recent, int) or recent < 1):
        raise ConfigurationError("recent must be a whole number of records, 1 or more",
                                 setting="recent")
    rid, when = _quote(spec.record_id), _quote(spec.event_time)
    where, params = [], []
    for bound, op in ((start, ">="), (end, "<=")):
        if bound is not None:
            where.append(f"{when} {op} ?")
            params.append(_utc(bound))
    rows = (f"SELECT *, row_number() OVER (PARTITION BY {rid}, {when} ORDER BY write_time "
            f"DESC) AS __dup, first_value(is_deleted) OVER (PARTITION BY {rid} ORDER BY "
            f"{when} DESC, write_time DESC) AS __gone FROM {_quote(spec.name)}"
            + (f" WHERE {' AND '.join(where)}" if where else ""))
    keep = [] if include_duplicates else ["__dup = 1"]
    if not include_deleted:
        keep += ["NOT is_deleted", "NOT __gone"]
    ranked = (f"SELECT *, row_number() OVER (PARTITION BY {rid} ORDER BY {when} DESC, "
              f"write_time DESC) AS __recent FROM ({rows})"
              + (f" WHERE {' AND '.join(keep)}" if keep else ""))
    picked = ", ".join(_quote(c) for c in columns)
    sql = (f"SELECT {picked} FROM ({ranked})"
           + (f" WHERE __recent <= {int(recent)}" if recent is not None else "")
           + f" ORDER BY {rid}, {when}")
    return sql, params


def _write_result(table: pa.Table, out: str) -> None:
    if out.endswith(".parquet"):
        write_table(table, out, format="parquet")
    elif out.endswith(".csv"):
        write_table(csv_safe(table), out, format="csv")
    else:
        raise ConfigurationError(f"--out {out}: use a .csv or .parquet file name", setting="out")


def csv_safe(table: pa.Table) -> pa.Table:
    """The table ready to be written as CSV for people to open in a spreadsheet.

    CSV has no lists: list columns become JSON arrays as text. A text cell that starts
    with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return would be run as a formula by
    Excel, LibreOffice or Google Sheets (CSV injection), so it gets a leading ``'`` and
    shows as the text it is. Only text columns change: a negative number in a numeric
    column stays a number.

    Args:
        table: A query result.

    Returns:
        A table with the same column names, list columns as text and formula-like text
        neutralised.
    """
    columns = []
    for column in table.columns:
        if pa.types.is_list(column.type) or pa.types.is_fixed_size_list(column.type) \
                or pa.types.is_large_list(column.type):
            column = pa.array([None if v is None else json.dumps(v) for v in column.to_pylist()],
                              pa.string())
        elif pa.types.is_dictionary(column.type) and _is_text(column.type.value_type):
            column = _neutralise_formulas(column.cast(pa.string()))
        elif _is_text(column.type):
            column = _neutralise_formulas(column)
        columns.append(column)
    return pa.Table.from_arrays(columns, names=table.column_names)


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) \
        or pa.types.is_string_view(kind)


# What OWASP's CSV injection advice lists as the start of a formula.
_FORMULA_START = r"^[=+\-@\t\r]"


def _neutralise_formulas(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    if pa.types.is_string_view(column.type):
        column = column.cast(pa.string())
    risky = pc.match_substring_regex(column, _FORMULA_START)
    quoted = pc.utf8_replace_slice(column, start=0, stop=0, replacement="'")
    return pc.if_else(risky, quoted, column)


def training_set(
    store: FeatureStore,
    entity_df: pd.DataFrame | pa.Table,
    features: Sequence[str],
    *,
    event_time: str = "event_time",
    include_deleted: bool = False,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    ttl_seconds: float | None = None,
    as_of: datetime | str | None = None,
    versions: dict[str, int] | None = None,
    full_feature_names: bool = False,
    manifest: str | None = None,
    output: str = "pandas",
    method: str = "sorted",
) -> Any:
    """Join feature groups to entity rows as of each row's event time (no leakage).

    Args:
        store: The feature store.
        entity_df: One row per training example: the record id column of each group and
            ``event_time``; other columns (labels...) are kept.
        features: ``"group:feature"`` references (``"group:*"`` for all of a group's features).
        event_time: Entity column holding the time each example is "as of".
        include_deleted: Ignore deletions (take the latest non-deleted values).
        start, end: Only feature records whose event time lies in this range.
        ttl_seconds: Values older than this, relative to the entity time, are null
            (default: each group's TTL).
        as_of: Use the offline history as it was at this write time.
        versions: Pin offline table versions per group (what manifests do).
        full_feature_names: Name columns ``group__feature`` instead of ``feature``.
        manifest: Write a JSON manifest here that rebuilds the same set later.
        output: ``pandas`` or ``arrow``.
        method: ``sorted`` (NumPy sort + searchsorted, the fast default) or ``duckdb``
            (DuckDB's ASOF JOIN); both give the same rows.

    Returns:
        Exactly one row per entity row, in the entity order, with typed feature columns.
    """
    if method not in ("sorted", "duckdb"):
        raise ConfigurationError("method must be 'sorted' or 'duckdb'", setting="method")
    entity = _entity_table(entity_df, event_time)
    requested = _parse_features(store, features)
    names: dict[str, str] = {}
    out = entity
    groups_meta: dict[str, Any] = {}
    plans = []
    for group_name, feature_names in requested.items():
        spec = store.feature_group(group_name).spec
        if spec.record_id not in entity.column_names:
            raise ConfigurationError(
                f"entity rows need a {spec.record_id!r} column for feature group {group_name!r}",
                feature_group=group_name, feature=spec.record_id)
        version = (versions or {}).get(group_name)
        if version is None and store.offline.exists(group_name):
            version = store.offline.version(group_name)
        ttl = ttl_seconds if ttl_seconds is not None else spec.ttl_seconds
        plans.append((group_name, feature_names, spec, version, ttl))
        for feature in feature_names:
            column = f"{group_name}__{feature}" if full_feature_names else feature
            if column in names or column in entity.column_names:
                raise ConfigurationError(
                    f"feature name {column!r} appears twice; pass full_feature_names=True",
                    feature=column)
            names[column] = group_name
    workers = max(1, min(len(plans), os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        if method == "duckdb":
            joined_all = list(pool.map(lambda plan: _asof_join(
                store, plan[2], entity, plan[1], event_time, plan[3], _utc(as_of), _utc(start),
                _utc(end), include_deleted, plan[4]), plans))
        else:
            # Read the histories (Arrow scans, GIL released) while the entity ids are
            # hashed, once per id column however many groups share it; then look up each
            # group (NumPy, GIL mostly released) in parallel.
            reads = [pool.submit(_history, store, plan[2], plan[1], plan[3], _utc(as_of),
                                 _utc(start), _utc(end), include_deleted) for plan in plans]
            from loopworks.featurestore.pointintime import encode_ids

            encoded = {name: encode_ids(entity.column(name))
                       for name in dict.fromkeys(plan[2].record_id for plan in plans)}
            lookups = [pool.submit(_sorted_join, plan[2], read, entity, encoded[plan[2].record_id],
                                   plan[1], event_time, plan[3], plan[4])
                       for plan, read in zip(plans, reads, strict=True)]
            joined_all = [lookup.result() for lookup in lookups]
    for (group_name, feature_names, _, version, ttl), (joined, how) in zip(
            plans, joined_all, strict=True):
        for feature in feature_names:
            column = f"{group_name}__{feature}" if full_feature_names else feature
            out = out.append_column(column, joined.column(feature))
        groups_meta[group_name] = {"version": version, "features": feature_names, "join": how,
                                   "ttl_seconds": ttl}
    out = out.drop_columns(["__lw_row"])
    if manifest:
        _write_manifest(manifest, features, event_time, groups_meta, entity, {
            "include_deleted": include_deleted, "start": _iso(start), "end": _iso(end),
            "ttl_seconds": ttl_seconds, "as_of": _iso(as_of),
            "full_feature_names": full_feature_names, "method": method})
    return out if output == "arrow" else out.to_pandas()


def training_set_from_manifest(store: FeatureStore, manifest: str,
                               entity_df: pd.DataFrame | pa.Table, output: str = "pandas") -> Any:
    """Rebuild a training set exactly, from a saved manifest and the same entity rows."""
    data = json.loads(Path(manifest).read_text(encoding="utf-8"))
    options = data["options"]
    return training_set(
        store, entity_df, data["features"], event_time=data["event_time"],
        include_deleted=options["include_deleted"], start=options["start"],
        end=options["end"], ttl_seconds=options["ttl_seconds"], as_of=options["as_of"],
        versions={g: m["version"] for g, m in data["groups"].items()},
        full_feature_names=options["full_feature_names"], output=output,
        method=options.get("method", "sorted"))


def _iso(value: datetime | str | None) -> str | None:
    when = _utc(value)
    return when.isoformat() if when else None


def _write_manifest(path: str, features: Sequence[str], event_time: str,
                    groups: dict[str, Any], entity: pa.Table, options: dict[str, Any]) -> None:
    data = {"created_at": datetime.now(UTC).isoformat(), "features": list(features),
            "event_time": event_time, "entity_rows": entity.num_rows, "options": options,
            "groups": groups}
    atomic_write(path, json.dumps(data, indent=2))


def _entity_table(entity_df: pd.DataFrame | pa.Table, event_time: str) -> pa.Table:
    table = entity_df if isinstance(entity_df, pa.Table) else pa.Table.from_pandas(
        entity_df, preserve_index=False)
    if event_time not in table.column_names:
        raise ConfigurationError(
            f"entity rows need an event time column {event_time!r} (columns: "
            f"{', '.join(table.column_names)})", feature=event_time)
    column = table.column(event_time)
    if pa.types.is_timestamp(column.type) and column.type.tz is None:
        column = pc.assume_timezone(column, "UTC")
    try:
        column = column.cast(EVENT_TIME_TYPE)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise ConfigurationError(f"entity column {event_time!r} must hold timestamps",
                                 feature=event_time) from None
    if column.null_count:
        raise ConfigurationError(f"entity column {event_time!r} has missing times",
                                 feature=event_time)
    table = table.set_column(table.column_names.index(event_time), event_time, column)
    return table.append_column("__lw_row", pa.array(np.arange(table.num_rows, dtype=np.int64)))


def _parse_features(store: FeatureStore, features: Sequence[str]) -> dict[str, list[str]]:
    if not features:
        raise ConfigurationError("name at least one feature as 'group:feature'")
    requested: dict[str, list[str]] = {}
    for ref in features:
        group, sep, feature = ref.partition(":")
        if not sep or not feature:
            raise ConfigurationError(f"feature reference {ref!r} must be 'group:feature'")
        spec = store.feature_group(group).spec
        if feature == "*":
            chosen = [d.name for d in spec.definitions
                      if d.name not in (spec.record_id, spec.event_time)]
        else:
            spec.definition(feature)
            chosen = [feature]
        requested.setdefault(group, [])
        requested[group] += [f for f in chosen if f not in requested[group]]
    return requested


def _history(store: FeatureStore, spec: Any, features: list[str], version: int | None,
             as_of: datetime | None, start: datetime | None, end: datetime | None,
             include_deleted: bool) -> pa.Table:
    """The history rows (and columns) a point-in-time lookup needs."""
    columns = [spec.record_id, spec.event_time, "write_time", "is_deleted", *features]
    if version is None:
        fields = [pa.field(d.name, d.arrow_type) for d in spec.definitions]
        fields += [pa.field("write_time", EVENT_TIME_TYPE), pa.field("is_deleted", pa.bool_())]
        return pa.schema(fields).empty_table().select(columns)
    import pyarrow.dataset as pads

    condition = None
    for clause in (
        pads.field(spec.event_time) >= pa.scalar(start, EVENT_TIME_TYPE) if start else None,
        pads.field(spec.event_time) <= pa.scalar(end, EVENT_TIME_TYPE) if end else None,
        ~pads.field("is_deleted") if include_deleted else None,
    ):
        if clause is not None:
            condition = clause if condition is None else condition & clause
    key = (spec.name, spec.created_at, store.offline.uri(spec.name), version, as_of, start, end,
           include_deleted, tuple(columns))
    cached = _HISTORY_CACHE.get(key)
    if cached is None:
        dataset = store.offline.dataset(spec.name, version=version, as_of=as_of)
        cached = dataset.to_table(columns=columns, filter=condition)
        _remember(key, cached)
    return cached


# A Delta table version never changes, so what was read for (group, version, filters) can be
# reused by the next training set in this process. Kept small: a few tables, 1 GiB at most.
_HISTORY_CACHE: OrderedDict[tuple[Any, ...], pa.Table] = OrderedDict()
_HISTORY_CACHE_BYTES = 1 << 30
_HISTORY_LOCK = threading.Lock()


def clear_history_cache() -> None:
    """Forget the offline histories that earlier training sets of this process read.

    The next training set reads its groups' Delta tables again (benchmarks use this to
    measure a cold join every time).
    """
    with _HISTORY_LOCK:
        _HISTORY_CACHE.clear()


def _remember(key: tuple[Any, ...], table: pa.Table) -> None:
    with _HISTORY_LOCK:
        _HISTORY_CACHE[key] = table
        _HISTORY_CACHE.move_to_end(key)
        while len(_HISTORY_CACHE) > 8 or \
                sum(t.nbytes for t in _HISTORY_CACHE.values()) > _HISTORY_CACHE_BYTES:
            _HISTORY_CACHE.popitem(last=False)
            if not _HISTORY_CACHE:
                break


def _sorted_join(spec: Any, read: Future[pa.Table], entity: pa.Table, ids: EncodedIds,
                 features: list[str], event_time: str, version: int | None,
                 ttl: float | None) -> tuple[pa.Table, str]:
    from loopworks.featurestore.pointintime import asof_indices

    history = read.result()
    index = asof_indices(ids, entity.column(event_time), history.column(spec.record_id),
                         history.column(spec.event_time), history.column("write_time"),
                         history.column("is_deleted"), ttl_seconds=ttl)
    picked = history.select(features).take(index)
    typed = [picked.column(f).cast(spec.definition(f).arrow_type) for f in features]
    description = (f"sorted as-of lookup on {spec.name} version {version}: last row per "
                   f"{spec.record_id} with {spec.event_time} <= entity {event_time}, "
                   "latest write_time first")
    return pa.Table.from_arrays(typed, names=features), description


def _asof_join(store: FeatureStore, spec: Any, entity: pa.Table, features: list[str],
               event_time: str, version: int | None, as_of: datetime | None,
               start: datetime | None, end: datetime | None, include_deleted: bool,
               ttl: float | None) -> tuple[pa.Table, str]:
    rid, et = _quote(spec.record_id), _quote(spec.event_time)
    con = _connect()
    keys = entity.select([spec.record_id, event_time, "__lw_row"])
    keys = keys.set_column(0, spec.record_id, keys.column(0).cast(pa.string()))
    con.register("entity", keys)
    if version is None:
        empty = pa.schema([pa.field(d.name, d.arrow_type) for d in spec.definitions]
                          + [pa.field("write_time", EVENT_TIME_TYPE),
                             pa.field("is_deleted", pa.bool_())]).empty_table()
        con.register("history", empty)
    else:
        try:
            con.register("history", store.offline.dataset(spec.name, version=version,
                                                          as_of=as_of))
        except NotFoundError:
            raise
    where = ["TRUE"]
    params: list[Any] = []
    if start is not None:
        where.append(f"{et} >= ?")
        params.append(start)
    if end is not None:
        where.append(f"{et} <= ?")
        params.append(end)
    if include_deleted:
        where.append("NOT is_deleted")
    picked = ", ".join(_quote(f) for f in features)
    stale = "FALSE" if ttl is None else f"e.{_quote(event_time)} - f.__et > to_microseconds(" \
        f"{int(ttl * 1_000_000)})"
    values = ", ".join(
        f"CASE WHEN f.__deleted OR {stale} THEN NULL ELSE f.{_quote(f)} END AS {_quote(f)}"
        for f in features)
    sql = (
        f"WITH f AS (SELECT {rid} AS __id, {et} AS __et, is_deleted AS __deleted, {picked} "
        f"FROM history WHERE {' AND '.join(where)} "
        f"QUALIFY row_number() OVER (PARTITION BY {rid}, {et} ORDER BY write_time DESC) = 1) "
        f"SELECT e.__lw_row, {values} FROM entity e ASOF LEFT JOIN f "
        f"ON e.{rid} = f.__id AND e.{_quote(event_time)} >= f.__et ORDER BY e.__lw_row")
    try:
        result = query_arrow(con, sql, params)
    finally:
        con.close()
    if result.num_rows != entity.num_rows:  # the one-row-per-entity-row contract
        raise ValidationError(f"point-in-time join returned {result.num_rows} rows for "
                              f"{entity.num_rows} entity rows", feature_group=spec.name)
    typed = []
    for f in features:
        column = result.column(f)
        target = spec.definition(f).arrow_type
        typed.append(column if column.type == target else column.cast(target))
    return pa.Table.from_arrays(typed, names=features), sql

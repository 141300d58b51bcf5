"""The Redis online store: one hash per record; ``redis`` is imported only when used.

This module's name matches the ``redis`` package's, but imports are absolute, so the
``import redis`` below loads the real top-level package, never this module.
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pyarrow as pa

from loopworks.errors import ConfigurationError, MissingDependencyError
from loopworks.featurestore.definitions import FeatureDefinition, FeatureType
from loopworks.featurestore.online.encoding import (
    Record,
    assemble_records,
    check_feature_names,
    check_ttl,
    column_values,
    latest_per_id,
    redact_url,
    selected_features,
    to_micros,
    version_conflict,
)

__all__ = ["RedisOnlineStore"]

# KEYS: record keys. ARGV: expire-at ms ('' = never), n, n field names, then one packed
# blob holding, per record, n + 1 int32 lengths (event time, each field; -1 = null) and the
# bytes (one argument per chunk: redis-py packs large argument lists slowly). Event times
# are compared as integer strings, exact beyond 2^53 where Lua numbers are not.
_AT_LEAST_LUA = """
local function at_least(a, b)
  local an, bn = string.sub(a, 1, 1) == '-', string.sub(b, 1, 1) == '-'
  if an ~= bn then return bn end
  if #a ~= #b then if an then return #a < #b end return #a > #b end
  if an then return a <= b end
  return a >= b
end
"""
_WRITE_LUA = _AT_LEAST_LUA + """
local expires, n = ARGV[1], tonumber(ARGV[2])
local blob, header = ARGV[3 + n], '<' .. string.rep('i4', n + 1)
local pos, written = 1, 0
for k = 1, #KEYS do
  local lengths = {struct.unpack(header, blob, pos)}
  pos = lengths[n + 2]
  local et = string.sub(blob, pos, pos + lengths[1] - 1)
  local stored = redis.call('HGET', KEYS[k], '_lw_et')
  if (not stored) or at_least(et, stored) then
    local args, at = {'_lw_et', et}, pos + lengths[1]
    for i = 1, n do
      local length = lengths[i + 1]
      if length >= 0 then
        args[#args + 1] = ARGV[2 + i]
        args[#args + 1] = string.sub(blob, at, at + length - 1)
        at = at + length
      end
    end
    redis.call('DEL', KEYS[k])
    redis.call('HSET', KEYS[k], unpack(args))
    if expires ~= '' then redis.call('PEXPIREAT', KEYS[k], expires) end
    written = written + 1
  end
  pos = pos + lengths[1]
  for i = 1, n do
    if lengths[i + 1] > 0 then pos = pos + lengths[i + 1] end
  end
end
return written
"""
# KEYS[1]: record key. ARGV: event time µs, '1' for hard. Returns {applied, stored event time}.
_DELETE_LUA = _AT_LEAST_LUA + """
local stored = redis.call('HGET', KEYS[1], '_lw_et')
if stored and not at_least(ARGV[1], stored) then return {0, stored} end
if ARGV[2] == '1' then
  redis.call('DEL', KEYS[1])
else
  redis.call('HSET', KEYS[1], '_lw_et', ARGV[1], '_lw_del', '1')
  redis.call('PERSIST', KEYS[1])
end
return {1, stored or ''}
"""
_WRITE_CHUNK = 500


class RedisOnlineStore:
    """Redis online store: one hash per record, latest-wins enforced by a Lua script.

    Keys are ``lw:{<group>}:r:<id>`` (the group percent-encoded, so ids may hold any
    character, colons included; the braces keep a group in one Redis Cluster slot) and
    ``lw:{<group>}:meta`` for the key feature names. Hash fields: one per non-null feature
    (scalars as exact text: ``repr`` floats, ints, ``1``/``0``, timestamps as µs; lists as raw
    little-endian bytes), ``_lw_et`` (event time µs) and ``_lw_del`` on tombstones. A write
    sends one script call per 500 records inside one MULTI/EXEC, so the table lands
    atomically; Redis serves nothing else while it applies it, so keep batches moderate
    (the feature group ingests 50,000 rows at a time). TTL uses ``PEXPIREAT``.

    Args:
        url: ``redis://[:password@]host:port/db`` or ``rediss://...``.

    Raises:
        MissingDependencyError: The ``redis`` package is not installed.
    """

    def __init__(self, url: str) -> None:
        try:
            import redis
        except ImportError:
            raise MissingDependencyError("redis", "redis", "the Redis online store") from None
        self.url = url
        self._redis = redis
        self._client = redis.Redis.from_url(url, decode_responses=False)
        self._write_script = self._client.register_script(_WRITE_LUA)
        self._delete_script = self._client.register_script(_DELETE_LUA)
        self._names: dict[str, tuple[str, ...]] = {}

    def __repr__(self) -> str:
        return f"RedisOnlineStore({redact_url(self.url)!r})"

    @staticmethod
    def _prefix(group: str) -> str:
        return "lw:{" + quote(group, safe="") + "}:"

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (self._redis.ConnectionError, self._redis.TimeoutError) as exc:
            raise ConfigurationError(
                f"cannot reach the Redis online store at {redact_url(self.url)}: {exc}; check "
                "the server and LOOPWORKS_ONLINE_STORE_URL", setting="online_store_url"
            ) from None

    def write(self, group: str, table: pa.Table, definitions: list[FeatureDefinition], *,
              record_id: str, event_time: str, ttl_seconds: float | None = None,
              before_commit: Callable[[], object] | None = None) -> int:
        """Upsert-if-newer all rows in one MULTI/EXEC; see :meth:`OnlineStore.write`."""
        check_ttl(ttl_seconds)
        check_feature_names(group, definitions)
        if table.num_rows == 0:
            return 0
        table, ids, times = latest_per_id(table, record_id, event_time)
        columns = [_redis_values(column_values(table, d, group), d) for d in definitions]
        stamps = [str(t).encode() for t in times]
        prefix = self._prefix(group) + "r:"
        head = [len(definitions), *(d.name for d in definitions)]
        header = struct.Struct("<" + "i" * (len(definitions) + 1))
        with self._errors():
            pipe = self._client.pipeline(transaction=True)
            if self._names.get(group) != (record_id, event_time):
                pipe.hset(prefix[:-2] + "meta",
                          mapping={"record_id": record_id, "event_time": event_time})
            expires = "" if ttl_seconds is None else \
                math.ceil((time.time() + ttl_seconds) * 1000)
            for start in range(0, len(ids), _WRITE_CHUNK):
                end = start + _WRITE_CHUNK
                parts: list[bytes] = []
                for stamp, *values in zip(stamps[start:end],
                                          *(column[start:end] for column in columns),
                                          strict=True):
                    parts.append(header.pack(len(stamp), *(-1 if v is None else len(v)
                                                           for v in values)))
                    parts.append(stamp)
                    parts.extend(v for v in values if v is not None)
                args: list[Any] = [expires, *head, b"".join(parts)]
                self._write_script(keys=[prefix + i for i in ids[start:end]], args=args,
                                   client=pipe)
            if before_commit is not None:
                before_commit()  # nothing is sent before the MULTI/EXEC below
            results = pipe.execute()
            self._names[group] = (record_id, event_time)
        chunks = -(-len(ids) // _WRITE_CHUNK)
        return int(sum(results[-chunks:]))

    def read(self, group: str, ids: Sequence[str], definitions: list[FeatureDefinition],
             features: Sequence[str] | None = None) -> list[Record | None]:
        """Latest records in order of ``ids``; see :meth:`OnlineStore.read`."""
        prefix = self._prefix(group)
        with self._errors():
            always = self._key_names(group) if features is not None else ()
            chosen = selected_features(definitions, features, always, group)
            fields = ["_lw_et", "_lw_del", *(d.name for d in chosen)]
            if len(ids) == 1:
                rows = [self._client.hmget(prefix + "r:" + ids[0], fields)]
            else:
                pipe = self._client.pipeline(transaction=False)
                for record_id in ids:
                    pipe.hmget(prefix + "r:" + record_id, fields)
                rows = pipe.execute()
        hits = [row if row[0] is not None and row[1] is None else None for row in rows]
        return assemble_records(chosen, hits, 2, redis=True)

    def _key_names(self, group: str) -> tuple[str, ...]:
        if group not in self._names:
            stored = self._client.hmget(self._prefix(group) + "meta", ["record_id", "event_time"])
            if None in stored:
                return ()
            self._names[group] = tuple(v.decode() if isinstance(v, bytes) else str(v)
                                       for v in stored)
        return self._names[group]

    def expires_at(self, group: str, record_id: str) -> datetime | None:
        """When a live record's TTL runs out; see :meth:`OnlineStore.expires_at`."""
        key = self._prefix(group) + "r:" + record_id
        with self._errors():
            pipe = self._client.pipeline(transaction=False)
            pipe.hmget(key, ["_lw_et", "_lw_del"])
            pipe.pttl(key)
            (event_time, deleted), left = pipe.execute()
        if event_time is None or deleted is not None or left is None or left < 0:
            return None
        return datetime.now(UTC) + timedelta(milliseconds=int(left))

    def delete(self, group: str, record_id: str, event_time: datetime, *, hard: bool,
               definitions: list[FeatureDefinition], record_id_name: str,
               event_time_name: str) -> bool:
        """Soft or hard delete as of ``event_time``; see :meth:`OnlineStore.delete`."""
        asked = to_micros(event_time)
        prefix = self._prefix(group)
        with self._errors():
            if self._names.get(group) != (record_id_name, event_time_name):
                self._client.hset(prefix + "meta", mapping={"record_id": record_id_name,
                                                            "event_time": event_time_name})
                self._names[group] = (record_id_name, event_time_name)
            applied, stored = self._delete_script(keys=[prefix + "r:" + record_id],
                                                  args=[asked, "1" if hard else "0"])
        if applied:
            return True
        if hard:
            raise version_conflict(group, record_id, int(stored), asked)
        return False

    def drop(self, group: str) -> None:
        """Remove every key of the group (SCAN + UNLINK)."""
        pattern = self._prefix(group).replace("[", "\\[").replace("]", "\\]") + "*"
        with self._errors():
            batch: list[bytes] = []
            for key in self._client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    self._client.unlink(*batch)
                    batch = []
            if batch:
                self._client.unlink(*batch)
        self._names.pop(group, None)

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


def _redis_values(values: list[Any], definition: FeatureDefinition) -> list[bytes | None]:
    """Hash field bytes: exact text for scalars (repr for floats), raw bytes for lists."""
    kind = definition.type
    if kind is FeatureType.LIST:
        return values
    if kind is FeatureType.BOOLEAN:
        return [None if v is None else (b"1" if v else b"0") for v in values]
    if kind is FeatureType.STRING:
        return [None if v is None else v.encode() for v in values]
    text = repr if kind is FeatureType.FRACTIONAL else str
    return [None if v is None else text(v).encode() for v in values]

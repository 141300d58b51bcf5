"""Feature definitions: names and types, inferred from data and enforced on ingest.

Types follow SageMaker Feature Store (String, Integral, Fractional, Boolean, Timestamp) plus
list/vector features with an element type and an optional fixed length, so token ids stay
``fixed_size_list<int32>[128]`` and embeddings ``fixed_size_list<float32>[d]``. Every type has
one canonical Arrow type; both stores keep values in it, never as JSON strings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from loopworks.errors import ConfigurationError, ValidationError

__all__ = [
    "EVENT_TIME_TYPE",
    "FeatureDefinition",
    "FeatureType",
    "conform_table",
    "load_feature_definitions",
]

EVENT_TIME_TYPE = pa.timestamp("us", tz="UTC")


class FeatureType(StrEnum):
    """The kinds of feature a group can hold."""

    STRING = "String"
    INTEGRAL = "Integral"
    FRACTIONAL = "Fractional"
    BOOLEAN = "Boolean"
    TIMESTAMP = "Timestamp"
    LIST = "List"


_ELEMENTS = {"int32": pa.int32(), "int64": pa.int64(), "float32": pa.float32(),
             "float64": pa.float64(), "string": pa.string(), "bool": pa.bool_()}
_SCALARS = {FeatureType.STRING: pa.string(), FeatureType.INTEGRAL: pa.int64(),
            FeatureType.FRACTIONAL: pa.float64(), FeatureType.BOOLEAN: pa.bool_(),
            FeatureType.TIMESTAMP: EVENT_TIME_TYPE}


@dataclass(frozen=True)
class FeatureDefinition:
    """One feature: its name, type and, for lists, element type and fixed length.

    Attributes:
        name: Column name.
        type: A :class:`FeatureType`.
        element: For lists: int32, int64, float32, float64, string or bool.
        length: For lists: the fixed length (e.g. 128 for input_ids), or ``None``.
        description: Free text shown in describe and search.
    """

    name: str
    type: FeatureType
    element: str | None = None
    length: int | None = None
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", FeatureType(self.type))
        if self.type is FeatureType.LIST:
            if self.element not in _ELEMENTS:
                raise ConfigurationError(
                    f"feature {self.name!r}: list element must be one of "
                    f"{', '.join(_ELEMENTS)}; got {self.element!r}",
                    feature=self.name, valid_values=list(_ELEMENTS))
            if self.length is not None and self.length < 1:
                raise ConfigurationError(f"feature {self.name!r}: list length must be >= 1",
                                         feature=self.name)
        elif self.element is not None or self.length is not None:
            raise ConfigurationError(
                f"feature {self.name!r}: element/length apply to List features only",
                feature=self.name)

    @property
    def arrow_type(self) -> pa.DataType:
        """The canonical Arrow type both stores keep this feature in."""
        if self.type is FeatureType.LIST:
            return pa.list_(_ELEMENTS[self.element or "int64"], self.length or -1)
        return _SCALARS[self.type]

    @property
    def type_name(self) -> str:
        """Human-readable type, e.g. ``List<int32>[128]``."""
        if self.type is FeatureType.LIST:
            return f"List<{self.element}>" + (f"[{self.length}]" if self.length else "")
        return self.type.value

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = asdict(self)
        data["type"] = self.type.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureDefinition:
        """Rebuild from :meth:`to_dict` output."""
        return cls(**data)


def _definition_for(name: str, dtype: pa.DataType) -> FeatureDefinition:
    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return FeatureDefinition(name, FeatureType.STRING)
    if pa.types.is_boolean(dtype):
        return FeatureDefinition(name, FeatureType.BOOLEAN)
    if pa.types.is_integer(dtype):
        return FeatureDefinition(name, FeatureType.INTEGRAL)
    if pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return FeatureDefinition(name, FeatureType.FRACTIONAL)
    if pa.types.is_timestamp(dtype) or pa.types.is_date(dtype):
        return FeatureDefinition(name, FeatureType.TIMESTAMP)
    if pa.types.is_fixed_size_list(dtype) or pa.types.is_list(dtype) \
            or pa.types.is_large_list(dtype):
        value = dtype.value_type
        element = next((k for k, v in _ELEMENTS.items() if v == value), None)
        if element is None and pa.types.is_integer(value):
            element = "int64"
        if element is None and pa.types.is_floating(value):
            element = "float64"
        if element is None:
            raise ConfigurationError(f"feature {name!r}: unsupported list element {value}",
                                     feature=name)
        length = dtype.list_size if pa.types.is_fixed_size_list(dtype) else None
        return FeatureDefinition(name, FeatureType.LIST, element, length)
    raise ConfigurationError(f"feature {name!r}: unsupported type {dtype}", feature=name)


def load_feature_definitions(data: pd.DataFrame | pa.Table) -> list[FeatureDefinition]:
    """Infer feature definitions from a DataFrame or Arrow table.

    Lists of equal length everywhere become fixed-length lists (input_ids: ``List<int32>[128]``).

    Raises:
        ConfigurationError: A column's type has no feature type (names the column).
    """
    table = to_arrow_table(data)
    definitions = []
    for field in table.schema:
        definition = _definition_for(field.name, field.type)
        if definition.type is FeatureType.LIST and definition.length is None \
                and table.num_rows:
            lengths = pc.list_value_length(table.column(field.name).combine_chunks())
            bounds = pc.min_max(lengths)
            if bounds["min"].as_py() == bounds["max"].as_py() and bounds["min"].as_py():
                definition = FeatureDefinition(field.name, FeatureType.LIST,
                                               definition.element, bounds["min"].as_py())
        definitions.append(definition)
    return definitions


def to_arrow_table(data: pd.DataFrame | pa.Table | pa.RecordBatch) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, pd.DataFrame):
        return pa.Table.from_pandas(data, preserve_index=False)
    raise ConfigurationError(f"expected a pandas DataFrame or Arrow table, got {type(data)}")


def conform_table(data: pd.DataFrame | pa.Table, definitions: list[FeatureDefinition], *,
                  record_id: str, event_time: str, group: str) -> pa.Table:
    """Validate data against the definitions and cast it to their canonical types.

    Columns missing from the data are null; unknown columns are an error. Nothing is
    written by the caller unless the whole batch conforms.

    Raises:
        ValidationError: Names the feature group, the row (0-based within the batch) and the
            feature, and what was wrong.
    """
    table = to_arrow_table(data)
    known = {d.name: d for d in definitions}
    unknown = [n for n in table.column_names if n not in known]
    if unknown:
        raise ValidationError(
            f"feature group {group!r}: unknown feature(s) {', '.join(unknown)}; add them with "
            "update (add features) first",
            feature_group=group, feature=unknown[0], row=None)
    columns = []
    for definition in definitions:
        if definition.name in table.column_names:
            column = _cast(table.column(definition.name), definition, group)
        else:
            column = pa.nulls(table.num_rows, definition.arrow_type)
        columns.append(column)
    out = pa.Table.from_arrays(columns, schema=pa.schema(
        [pa.field(d.name, d.arrow_type) for d in definitions]))
    for name, what in ((record_id, "record identifier"), (event_time, "event time")):
        nulls = out.column(name).is_null()
        if name == record_id:
            nulls = pc.or_kleene(nulls, pc.equal(out.column(name), "")).fill_null(True)
        if pc.any(nulls).as_py():
            row = int(np.flatnonzero(nulls.to_numpy(zero_copy_only=False))[0])
            raise ValidationError(
                f"feature group {group!r}: row {row}: missing {what} {name!r}",
                feature_group=group, row=row, feature=name)
    return out


def _cast(column: pa.ChunkedArray, definition: FeatureDefinition, group: str) -> pa.ChunkedArray:
    target = definition.arrow_type
    source = column.type
    if source == target:
        return column
    if definition.type is FeatureType.TIMESTAMP:
        if pa.types.is_timestamp(source) and source.tz is None:
            column = pc.assume_timezone(column, "UTC") if source.unit else column
            return column.cast(target)
        if pa.types.is_date(source):
            return column.cast(pa.timestamp("us")).cast(target)
        if (pa.types.is_floating(source) or pa.types.is_integer(source)) \
                and not pa.types.is_boolean(source):
            # Epoch seconds, as SageMaker's Fractional event times (microseconds kept).
            seconds = pc.cast(column, pa.float64())
            if pc.any(pc.invert(pc.is_finite(seconds))).as_py():
                raise ValidationError(
                    f"feature group {group!r}: feature {definition.name!r} holds a value "
                    "that is not a finite number of epoch seconds", feature_group=group,
                    feature=definition.name)
            micros = pc.cast(pc.round(pc.multiply(seconds, 1_000_000)), pa.int64())
            return micros.cast(pa.timestamp("us")).cast(target)
        if pa.types.is_string(source):
            try:
                return pc.cast(pc.strptime(column, "%Y-%m-%dT%H:%M:%S", "us", error_is_null=False),
                               target)
            except pa.ArrowInvalid:
                pass
    if definition.type is FeatureType.LIST and definition.length is not None:
        lengths = pc.list_value_length(column.combine_chunks()) \
            if pa.types.is_list(source) or pa.types.is_large_list(source) \
            or pa.types.is_fixed_size_list(source) else None
        if lengths is not None:
            wrong = pc.fill_null(pc.not_equal(lengths, definition.length), False)
            if pc.any(wrong).as_py():
                row = int(np.flatnonzero(wrong.to_numpy(zero_copy_only=False))[0])
                raise ValidationError(
                    f"feature group {group!r}: row {row}: feature {definition.name!r} has "
                    f"{lengths[row].as_py()} values; its definition is {definition.type_name}",
                    feature_group=group, row=row, feature=definition.name)
    try:
        return column.cast(target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        bad_row = _first_bad_row(column, target)
        where = f"row {bad_row}: " if bad_row is not None else ""
        raise ValidationError(
            f"feature group {group!r}: {where}feature {definition.name!r} expects "
            f"{definition.type_name}, got {source} ({str(exc).splitlines()[0]})",
            feature_group=group, row=bad_row, feature=definition.name) from None


def _first_bad_row(column: pa.ChunkedArray, target: pa.DataType) -> int | None:
    """Error path only: find the first value that does not cast."""
    values = column.combine_chunks()
    low, high = 0, len(values)
    try:
        values.cast(target, safe=True)
        return None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        pass
    while high - low > 1:  # bisect: a cast of a slice fails iff it holds a bad value
        mid = (low + high) // 2
        try:
            values.slice(low, mid - low).cast(target, safe=True)
            low = mid
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            high = mid
        except pa.ArrowNotImplementedError:
            return 0
    return low

"""The machinery behind the study's Parquet tables: columns, schemas, checked I/O.

Each table's columns are declared once, in the module of the stage that writes it
(`hitkit.study.manifest`, `hitkit.study.trials`, `hitkit.study.responses`).
Factor columns (one per factor in [analysis].factors) follow the fixed columns.
Columns are added, never silently renamed: a reader checks names and types and
names the file and column that do not fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from hitkit.study.files import atomic_write


class TableError(ValueError):
    """A table that does not match its schema; the message names the file and column."""


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    description: str
    nullable: bool = False
    # a column added after files were already written: a file that lacks it reads with
    # nulls there (so it must be nullable) instead of being refused
    added_later: bool = False

    def __post_init__(self) -> None:
        if self.added_later and not self.nullable:
            raise ValueError(f"column {self.name!r}: a column added later must be nullable")


@dataclass(frozen=True)
class TableSchema:
    """A table's fixed columns; factor columns are added per study."""

    name: str
    owner: str  # the stage (module) that writes the table
    columns: tuple[Column, ...]
    factor_description: str = "one string column per factor in [analysis].factors"

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def arrow(self, factors: Sequence[str] = ()) -> pa.Schema:
        clashes = sorted(set(factors) & set(self.names))
        if clashes:
            raise TableError(
                f"{self.name}: factor name(s) {', '.join(clashes)} clash with fixed columns"
            )
        fields = [pa.field(c.name, c.type, nullable=c.nullable) for c in self.columns]
        fields += [pa.field(f, pa.string(), nullable=False) for f in factors]
        return pa.schema(fields)

    def to_table(self, rows: dict[str, list] | Sequence[dict], factors: Sequence[str] = ()) -> pa.Table:
        """Build a checked Arrow table from columns (dict of lists) or row dicts."""
        schema = self.arrow(factors)
        if isinstance(rows, dict):
            columns = rows
        else:
            columns = {name: [row.get(name) for row in rows] for name in schema.names}
        missing = [name for name in schema.names if name not in columns]
        if missing:
            raise TableError(f"{self.name}: missing column(s) {', '.join(missing)}")
        extra = sorted(set(columns) - set(schema.names))
        if extra:
            raise TableError(
                f"{self.name}: column(s) {', '.join(extra)} are not in the schema; "
                f"add them to {self.owner} first"
            )
        arrays = []
        for fld in schema:
            try:
                arrays.append(pa.array(columns[fld.name], type=fld.type))
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
                raise TableError(f"{self.name}: column {fld.name!r}: {exc}") from None
        table = pa.Table.from_arrays(arrays, schema=schema)
        self.check(table, factors, where=self.name)
        return table

    def check(self, table: pa.Table, factors: Sequence[str] = (), where: str = "") -> pa.Table:
        """Raise TableError unless `table` has every column with its type and no bad nulls.

        Extra columns are kept (a later version may have added them); a column
        `added_later` that an older file lacks is added as nulls; the fixed and factor
        columns are cast to their declared types.
        """
        where = where or self.name
        expected = self.arrow(factors)
        later = {c.name for c in self.columns if c.added_later}
        missing = [f.name for f in expected
                   if f.name not in table.column_names and f.name not in later]
        if missing:
            raise TableError(f"{where}: missing column(s) {', '.join(missing)}")
        for fld in expected:
            if fld.name not in table.column_names:
                table = table.append_column(fld, pa.nulls(table.num_rows, fld.type))
                continue
            column = table.column(fld.name)
            if not column.type.equals(fld.type):
                try:
                    column = column.cast(fld.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise TableError(
                        f"{where}: column {fld.name!r} has type {table.schema.field(fld.name).type}, "
                        f"expected {fld.type} ({exc})"
                    ) from None
                table = table.set_column(table.schema.get_field_index(fld.name), fld, column)
            if not fld.nullable and column.null_count:
                raise TableError(
                    f"{where}: column {fld.name!r} has {column.null_count} empty value(s); "
                    "it must always be set"
                )
        return table


def write_table(table: pa.Table, path: str | Path) -> Path:
    """Write Parquet atomically: a reader never sees a half-written file."""
    return atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def read_table(path: str | Path, schema: TableSchema, factors: Sequence[str] = ()) -> pa.Table:
    """Read a Parquet table and check it against its schema, naming the file on error."""
    path = Path(path)
    if not path.is_file():
        raise TableError(f"{path}: no such file (written by {schema.owner})")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise TableError(f"{path}: not a readable Parquet file: {exc}") from None
    return schema.check(table, factors, where=str(path))

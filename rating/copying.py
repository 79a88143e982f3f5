"""Copy a whole rating database to another one, across backends: an SQLite file to a team's PostgreSQL when a
team outgrows the file, PostgreSQL back to a file for an archive, or file to file (`python -m rating copy`).

    copy_database(src, dst, batch=1000) -> {table: (rows in src, rows in dst)}

Both databases are opened as the store opens them (so both are at the current schema first), the destination
must be empty, and every table of `rating.schema.TABLES_IN_ORDER` is copied in one write transaction on the
destination: a copy that fails leaves the destination as empty as it was. Rows keep their values, the rating
history its ids (on PostgreSQL its id sequence then moves past them, so the next change gets a fresh id). Alembic's
own table is not copied: the destination already has the same revision.
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import Connection, func, select, text
from sqlalchemy.exc import IntegrityError

from rating.schema import TABLES_IN_ORDER, rating_history
from rating.store import RatingStore


def copy_database(src: str | os.PathLike[str], dst: str | os.PathLike[str], *,
                  batch: int = 1000) -> dict[str, tuple[int, int]]:
    """Copy every row of the rating database `src` into the empty rating database `dst` (each a file path, an
    ``sqlite:///`` URL or a ``postgresql://`` URL; `dst` is created or upgraded as the store does), `batch`
    rows at a time. Returns {table: (source rows, destination rows)}, which agree.

    Raises ValueError when `dst` has any row already (nothing is written), when a row does not fit the
    destination (nothing is written), or when the counts differ after the copy (rolled back);
    rating.database.DatabaseError when either database cannot be opened."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a whole number of rows of at least 1, got {batch!r}")
    source = RatingStore(src)
    try:
        destination = RatingStore(dst)
        try:
            return _copy(source, destination, batch)
        finally:
            destination.close()
    finally:
        source.close()


def _copy(source: RatingStore, destination: RatingStore, batch: int) -> dict[str, tuple[int, int]]:
    counts: dict[str, tuple[int, int]] = {}
    with source._read() as read, destination._write() as write:
        if read.dialect.name == "postgresql":  # one snapshot for every table, as SQLite's read transaction is
            read.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        if write.dialect.name == "postgresql":  # nobody writes into the destination while we check and fill it
            names = ", ".join(table.name for table in TABLES_IN_ORDER)
            write.execute(text(f"LOCK TABLE {names} IN EXCLUSIVE MODE"))
        for table in TABLES_IN_ORDER:
            if write.execute(select(table).limit(1)).first() is not None:
                raise ValueError(f"{destination.location} is not empty (table {table.name} has rows); copy into a "
                                 "new, empty database")
        for table in TABLES_IN_ORDER:
            _copy_table(read, write, table, batch, destination.location)
        if write.dialect.name == "postgresql":  # next history id after the copied ones (1 when there are none)
            history = rating_history.name
            write.execute(text(f"SELECT setval(pg_get_serial_sequence('{history}', 'id'), "
                               f"COALESCE((SELECT MAX(id) FROM {history}), 0) + 1, false)"))
        for table in TABLES_IN_ORDER:
            counts[table.name] = (_count(read, table), _count(write, table))
        differ = [f"{name} {a} in the source, {b} in the copy" for name, (a, b) in counts.items() if a != b]
        if differ:  # raising here rolls the copy back
            raise ValueError(f"the copy into {destination.location} does not match its source: "
                             + "; ".join(differ) + "; nothing was written")
    return counts


def _copy_table(read: Connection, write: Connection, table: Any, batch: int, where: str) -> None:
    query = select(table).order_by(*table.primary_key.columns)
    result = read.execution_options(yield_per=batch).execute(query)  # streamed: a server-side cursor on PostgreSQL
    for rows in result.partitions():
        try:
            write.execute(table.insert(), [row._asdict() for row in rows])
        except IntegrityError as error:
            reason = str(error.orig or error).strip().splitlines()[0]
            raise ValueError(f"a row of table {table.name} does not fit {where}: {reason}; nothing was written") \
                from None


def _count(conn: Connection, table: Any) -> int:
    return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


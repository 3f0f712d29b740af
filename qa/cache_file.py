"""Open a build's cache database (SQLite): the embedding cache (qa/embeddings/cache.py) and the OCR cache (qa/documents/ocr.py).

A cache never fails a build. A file that is locked, read-only or on a full disk is left as it is and
the build works in memory; a file that is not a database is deleted and started afresh. Either way
the caller gets the reason to report.
"""

import sqlite3
from collections.abc import Callable
from pathlib import Path


def open_cache(path: Path, prepare: Callable[[sqlite3.Connection], None], name: str, otherwise: str
               ) -> tuple[sqlite3.Connection, str | None]:
    """A connection to the cache at `path`, with `prepare(connection)` run on it (tables, generation),
    and None; or, where the file cannot be used, a connection to a database in memory and the reason:
    "{name} {path} cannot be used (…); {otherwise}" or "… was damaged (…); it was started afresh"."""
    try:
        return connect_cache(path, prepare), None
    except sqlite3.OperationalError as error:  # locked, read-only, disk full: keep the file, skip it
        return connect_cache(":memory:", prepare), f"{name} {path} cannot be used ({error}); {otherwise}"
    except sqlite3.DatabaseError as error:  # not a database, malformed: it is only a cache
        delete_cache_files(path)
        return connect_cache(path, prepare), f"{name} {path} was damaged ({error}); it was started afresh"


def connect_cache(path: Path | str, prepare: Callable[[sqlite3.Connection], None]) -> sqlite3.Connection:
    """A connection in autocommit mode (callers open their own transactions) with `prepare` run on it."""
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        # WAL with synchronous=NORMAL survives the process being killed at any moment (only an OS crash
        # can lose the last transactions, and a cache can afford that). The log is checkpointed every
        # ~1 MB and cut back to that size rather than growing to 4 MB beside the cache: on a nearly
        # full disk those megabytes are the difference.
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("PRAGMA wal_autocheckpoint=256")
        connection.execute("PRAGMA journal_size_limit=1048576")
        prepare(connection)
    except sqlite3.DatabaseError:
        connection.close()
        raise
    return connection


def delete_cache_files(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)

"""Passage vectors computed by earlier builds, so that a rebuild embeds only what is new.

A vector is stored under the name of what made it (the model, with its precision; the second encoder;
the model's question vectors) and a hash of the exact text it read (the passage's embedding text, its
section title included). So an unchanged passage is never embedded twice, whatever happened around
it: its file renamed, another file edited, passages before it renumbered. A different model, or a
changed text, is simply a different key; a name's vectors are never given for another name.

The cache is one SQLite file, `embedding-cache.sqlite` in the index folder (beside `builds/`),
written in a transaction after each embedded chunk: a build killed midway keeps what it embedded
and the next build continues from there. It is only a cache: a damaged file is deleted and
rebuilt, never trusted. Rows of the names this build used that neither this build nor the previous
one used are deleted after a successful build, so the file stays about the size of the index's
vectors (plus the previous versions of edited passages, which makes undoing an edit free).

Its size is the vectors' own and little more (format 2): each vector is a row of a rowid table in
16 KB pages, so it lies inside its page (format 1 kept it in a WITHOUT ROWID table, where a row of
more than ~1 KB spills into an overflow page of its own: 13 KB a passage for 3.5 KB of vectors); its
key is 16 bytes of the text's sha256; the generation that last used a row lives in a narrow table
of its own, so marking 100,000 rows used rewrites a megabyte, not the vectors. Names listed in
`float16` (the second encoder's, whose passage vectors a build stores in float16 anyway) keep their
vectors in float16; each name's storage type is recorded with it, so a vector is always read back
as it was written. A cache of format 1 is converted when first opened (its keyword tokens, which a
rebuild now takes from the previous build, are dropped); one of a newer format is left alone.
"""

import hashlib
import sqlite3
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from qa.cache_file import connect_cache, open_cache

CACHE_FILE = "embedding-cache.sqlite"
FORMAT = 2  # PRAGMA user_version; format 1 (user_version 0) is converted on opening
_PAGE_SIZE = 16384  # ten e5 vectors a page: a row never spills into an overflow page
_PARAMETERS = 500  # SQLite allows 999 host parameters in one statement on old builds
_CONVERT_ROWS = 4096  # format-1 rows converted at a time

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS names (     -- what made the vectors: a model and its precision, an encoder
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        dtype TEXT NOT NULL                     -- how its vectors are stored: float32 or float16
    )""",
    """CREATE TABLE IF NOT EXISTS vectors (
        id INTEGER PRIMARY KEY,
        name INTEGER NOT NULL,                  -- names.id
        key BLOB NOT NULL,                      -- the first 16 bytes of the sha256 of the text
        vector BLOB NOT NULL                    -- normalised, in the name's dtype
    )""",
    "CREATE UNIQUE INDEX IF NOT EXISTS vectors_by_key ON vectors (name, key)",
    """CREATE TABLE IF NOT EXISTS used (      -- the generation (build number) that last used vectors.id
        id INTEGER PRIMARY KEY,
        generation INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS generations ( -- one row, model '*': the number of builds that opened the cache
        model TEXT PRIMARY KEY,
        generation INTEGER NOT NULL
    )""",
]


def text_key(text: str) -> bytes:
    """The cache's key of `text`: 16 bytes of its sha256 (a collision needs ~2**64 texts)."""
    return hashlib.sha256(text.encode("utf-8")).digest()[:16]


class EmbeddingCache:
    """Vectors by (name, text) in one SQLite file. Open one per build, with `with`.

    `model`: the name `get` and `put` use by default; `float16`: names whose vectors are kept in
    float16 (and given back as float32); `progress(done, total)`: the vectors converted so far when
    the file is of format 1 (10 seconds for 180,000 vectors; the compacting that follows says nothing).

    Opening starts a new generation; rows read or written are marked with it, and `forget_unused()`
    deletes rows of the names this build used that are older than the previous generation. The cache never fails a build: if the file cannot be used, it
    works in memory for this build and says why in `problem`.
    """

    def __init__(self, path: Path, model: str, float16: Iterable[str] = (), progress: Callable[[int, int], None] | None = None):
        self.path = Path(path)
        self.model = model
        self.models = {model}  # every name whose vectors this build read or wrote (see `get`)
        self.float16 = frozenset(float16)
        self._names: dict[str, tuple[int, str]] = {}  # name -> (names.id, dtype), as read or written
        self._progress = progress or (lambda done, total: None)  # of converting a format-1 cache
        self.converted: str | None = None  # what converting a format-1 cache did, for the build's notes
        self.connection, self.problem = open_cache(self.path, self._prepare, "embedding cache", "every passage is embedded")

    def _prepare(self, connection: sqlite3.Connection) -> None:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if version > FORMAT:  # kept for the newer qa that wrote it; this build works in memory
            raise sqlite3.OperationalError(f"it is format {version}, written by a newer version of qa")
        if version < FORMAT and tables:
            self._convert(connection, tables)
        elif not tables:
            _set_page_size(connection)
        with self._transaction(connection):
            for statement in _SCHEMA:
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {FORMAT}")
            row = connection.execute("SELECT generation FROM generations WHERE model = '*'").fetchone()
            self.generation = (row[0] if row else 0) + 1
            connection.execute("INSERT OR REPLACE INTO generations (model, generation) VALUES ('*', ?)", (self.generation,))

    def _convert(self, connection: sqlite3.Connection, tables: set[str]) -> None:
        """Convert a format-1 cache (vectors in a WITHOUT ROWID table by model and 32-byte key, keyword
        tokens beside them) in one transaction, then compact the file. Its vectors are read back as they
        were written (float32), and kept in float16 for the names in `float16`."""
        before = self.path.stat().st_size if self.path.exists() else 0
        with self._transaction(connection):
            old = "vectors" in tables and {row[1] for row in connection.execute("PRAGMA table_info(vectors)")} >= {"model", "key", "used", "vector"}
            if old:
                connection.execute("ALTER TABLE vectors RENAME TO format1_vectors")
            for table in tables - {"vectors", "generations"}:
                connection.execute(f"DROP TABLE IF EXISTS {table}")
            for statement in _SCHEMA:
                connection.execute(statement)
            if old:
                total, done = connection.execute("SELECT count(*) FROM format1_vectors").fetchone()[0], 0
                self._progress(0, total)
                rows = connection.execute("SELECT model, key, used, vector FROM format1_vectors ORDER BY model, key")
                while chunk := rows.fetchmany(_CONVERT_ROWS):
                    done += len(chunk)
                    by_name: dict[str, list] = {}
                    for model, key, used, vector in chunk:
                        if isinstance(vector, bytes) and len(vector) % 4 == 0 and len(key) == 32:
                            by_name.setdefault(model, []).append((key[:16], used, vector))
                    for model, found in by_name.items():
                        name_id, dtype = self._name(model, create=True, connection=connection)
                        vectors = [np.frombuffer(vector, dtype=np.float32).astype(dtype).tobytes() for _, _, vector in found]
                        self._insert(connection, name_id, [key for key, _, _ in found], vectors, [used for _, used, _ in found])
                    self._progress(min(done, total), total)
                connection.execute("DROP TABLE format1_vectors")
            connection.execute(f"PRAGMA user_version = {FORMAT}")
        _set_page_size(connection)  # and give the space back: format 1 took ~4 times the room
        self.converted = (f"embedding cache {self.path} converted to a compact format: "
                          f"{before / 2**20:,.0f} MB -> {self.path.stat().st_size / 2**20:,.0f} MB")

    def _name(self, name: str, create: bool = False, connection: sqlite3.Connection | None = None) -> tuple[int, str] | None:
        """(names.id, dtype) of `name`; None if it has no vectors here, unless `create` (inside a transaction)."""
        if name not in self._names:
            connection = connection or self.connection
            row = connection.execute("SELECT id, dtype FROM names WHERE name = ?", (name,)).fetchone()
            if row is None:
                if not create:
                    return None
                dtype = "float16" if name in self.float16 else "float32"
                row = (connection.execute("INSERT INTO names (name, dtype) VALUES (?, ?)", (name, dtype)).lastrowid, dtype)
            self._names[name] = (row[0], row[1])
        return self._names[name]

    def _give_up(self, problem: str) -> None:
        if getattr(self, "connection", None) is not None:
            self.connection.close()
        self._names.clear()
        self.connection = connect_cache(":memory:", self._prepare)
        self.problem = problem

    @contextmanager
    def _transaction(self, connection: sqlite3.Connection | None = None):
        connection = connection or self.connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            connection.execute("ROLLBACK")
            self._names.clear()  # names inserted in the transaction are gone
            raise
        connection.execute("COMMIT")

    def get(self, texts: list[str], model: str | None = None) -> list[np.ndarray | None]:
        """The cached vector of each text (float32), or None where there is none; marks the found rows as used.

        `model` names another encoder whose vectors the build keeps here too (questions of the
        relevance background, the second encoder's); by default the cache's own model."""
        model = model or self.model
        self.models.add(model)
        keys = [text_key(text) for text in texts]
        unique = list(dict.fromkeys(keys))
        found: dict[bytes, bytes] = {}
        try:
            with self._transaction():
                named = self._name(model)
                if named is None:
                    return [None] * len(keys)
                name_id, dtype = named
                for start in range(0, len(unique), _PARAMETERS):
                    chunk = unique[start : start + _PARAMETERS]
                    rows = self.connection.execute(
                        f"SELECT id, key, vector FROM vectors WHERE name = ? AND key IN ({','.join('?' * len(chunk))})",
                        (name_id, *chunk),
                    ).fetchall()
                    found.update((key, vector) for _, key, vector in rows)
                    self._mark_used([row[0] for row in rows])
        except sqlite3.Error as error:
            self._give_up(f"embedding cache {self.path} cannot be read ({error}); everything is computed afresh")
            return [None] * len(keys)
        return [found.get(key) for key in keys] if not found else _decoded(keys, found, dtype)

    def _mark_used(self, ids: list[int]) -> None:
        for start in range(0, len(ids), _PARAMETERS):
            chunk = ids[start : start + _PARAMETERS]
            self.connection.execute(
                f"UPDATE used SET generation = ? WHERE id IN ({','.join('?' * len(chunk))})", (self.generation, *chunk)
            )

    def put(self, texts: list[str], vectors: np.ndarray, model: str | None = None) -> None:
        """Store the vector of each text (one transaction: all of them or, if killed, none)."""
        model = model or self.model
        self.models.add(model)
        by_key = dict(zip((text_key(text) for text in texts), np.asarray(vectors)))  # a text given twice: once
        try:
            with self._transaction():
                name_id, dtype = self._name(model, create=True)
                keys = list(by_key)
                for start in range(0, len(keys), _PARAMETERS):  # a vector stored again replaces the old one
                    chunk = keys[start : start + _PARAMETERS]
                    marks = ",".join("?" * len(chunk))
                    old = f"SELECT id FROM vectors WHERE name = ? AND key IN ({marks})"
                    self.connection.execute(f"DELETE FROM used WHERE id IN ({old})", (name_id, *chunk))
                    self.connection.execute(f"DELETE FROM vectors WHERE name = ? AND key IN ({marks})", (name_id, *chunk))
                encoded = [np.ascontiguousarray(vector, dtype=dtype).tobytes() for vector in by_key.values()]
                self._insert(self.connection, name_id, keys, encoded, [self.generation] * len(keys))
        except sqlite3.Error as error:
            self._give_up(f"embedding cache {self.path} cannot be written ({error}); new vectors are not kept")

    @staticmethod
    def _insert(connection: sqlite3.Connection, name_id: int, keys: list[bytes], vectors: list[bytes], used: list[int]) -> None:
        """Insert rows with ids of their own (inside a transaction): the vectors and when they were used."""
        first = connection.execute("SELECT coalesce(max(id), 0) + 1 FROM vectors").fetchone()[0]
        ids = range(first, first + len(keys))
        connection.executemany("INSERT INTO vectors (id, name, key, vector) VALUES (?, ?, ?, ?)",
                               zip(ids, [name_id] * len(keys), keys, vectors))
        connection.executemany("INSERT OR REPLACE INTO used (id, generation) VALUES (?, ?)", zip(ids, used))

    def clear(self) -> None:
        """Forget every vector of this model (used when the model behind a name turns out to have changed)."""
        try:
            with self._transaction():
                named = self._name(self.model)
                if named is not None:
                    self.connection.execute("DELETE FROM used WHERE id IN (SELECT id FROM vectors WHERE name = ?)", (named[0],))
                    self.connection.execute("DELETE FROM vectors WHERE name = ?", (named[0],))
        except sqlite3.Error as error:
            self._give_up(f"embedding cache {self.path} cannot be written ({error}); new vectors are not kept")

    def forget_unused(self) -> int:
        """Delete the rows of the names this build used that neither this build nor the previous one
        used; returns how many."""
        try:
            with self._transaction():
                forgotten = 0
                for model in sorted(self.models):
                    named = self._name(model)
                    if named is None:
                        continue
                    stale = "SELECT vectors.id FROM vectors JOIN used ON used.id = vectors.id WHERE name = ? AND generation < ?"
                    ids = [row[0] for row in self.connection.execute(stale, (named[0], self.generation - 1))]
                    for start in range(0, len(ids), _PARAMETERS):
                        chunk = ids[start : start + _PARAMETERS]
                        marks = ",".join("?" * len(chunk))
                        self.connection.execute(f"DELETE FROM vectors WHERE id IN ({marks})", chunk)
                        self.connection.execute(f"DELETE FROM used WHERE id IN ({marks})", chunk)
                    forgotten += len(ids)
        except sqlite3.Error:
            return 0
        return forgotten

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> "EmbeddingCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _decoded(keys: list[bytes], found: dict[bytes, bytes], dtype: str) -> list[np.ndarray | None]:
    """The vector of each key (float32, read-only) from the `found` blobs, None where there is none: rows of
    one matrix decoded at once (a vector at a time took a quarter of a rebuild's cache reads)."""
    sizes = {len(blob) for blob in found.values()}
    if len(sizes) > 1:  # vectors of two dimensions under one name (the caller clears them): one at a time
        return [None if key not in found else np.frombuffer(found[key], dtype=dtype).astype(np.float32) for key in keys]
    row = dict(zip(found, range(len(found))))
    matrix = np.frombuffer(b"".join(found.values()), dtype=dtype).reshape(len(found), -1).astype(np.float32, copy=False)
    return [matrix[row[key]] if key in row else None for key in keys]


def _set_page_size(connection: sqlite3.Connection) -> None:
    """Rewrite the database in `_PAGE_SIZE` pages (fast when it is empty); WAL mode forbids changing
    the page size, so the journal is switched to DELETE meanwhile (this build holds the only connection)."""
    if connection.execute("PRAGMA page_size").fetchone()[0] == _PAGE_SIZE and connection.execute("PRAGMA freelist_count").fetchone()[0] == 0:
        return
    connection.execute("PRAGMA journal_mode=DELETE")
    connection.execute(f"PRAGMA page_size={_PAGE_SIZE}")
    connection.execute("VACUUM")
    connection.execute("PRAGMA journal_mode=WAL")

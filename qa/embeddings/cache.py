"""Passage vectors (and keyword tokens) computed by earlier builds, so that a rebuild redoes only what is new.

A vector is stored under the model's name and the sha256 of the exact text the model read (the
passage's embedding text, its section title included). So an unchanged passage is never embedded
twice, whatever happened around it: its file renamed, another file edited, passages before it
renumbered. A different model, or a changed text, is simply a different key. The keyword index's
tokens of the same text are kept the same way, under the tokenizer's name (jieba is the slowest
step of a rebuild once embedding is skipped).

The cache is one SQLite file, `embedding-cache.sqlite` in the index folder (beside `builds/`),
written in a transaction after each embedded chunk: a build killed midway keeps what it embedded
and the next build continues from there. It is only a cache: a damaged file is deleted and
rebuilt, never trusted. Rows of the model (and tokenizer) built with that neither this build nor
the previous one used are deleted after a successful build, so the file stays about the size of
the index (plus the previous versions of edited passages, which makes undoing an edit free).
"""

import hashlib
import sqlite3
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from qa.cache_file import connect_cache, open_cache

CACHE_FILE = "embedding-cache.sqlite"
_PARAMETERS = 500  # SQLite allows 999 host parameters in one statement on old builds
_SEPARATOR = "\x1f"  # between tokens: a control character no token contains

_SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (
    model TEXT NOT NULL,
    key BLOB NOT NULL,          -- sha256 of the embedding text
    used INTEGER NOT NULL,      -- the generation (build number) that last used the row
    vector BLOB NOT NULL,       -- float32, normalised
    PRIMARY KEY (model, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tokens (
    tokenizer TEXT NOT NULL,
    key BLOB NOT NULL,          -- sha256 of the text
    used INTEGER NOT NULL,
    tokens TEXT NOT NULL,       -- joined by U+001F
    PRIMARY KEY (tokenizer, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS generations (  -- one row, model '*': the number of builds that opened the cache
    model TEXT PRIMARY KEY,
    generation INTEGER NOT NULL
);
"""


def text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


class EmbeddingCache:
    """Vectors by (model, text) and tokens by (tokenizer, text) in one SQLite file. Open one per build, with `with`.

    Opening starts a new generation; rows read or written are marked with it, and `forget_unused()`
    deletes this model's and tokenizer's rows older than the previous generation. The cache never
    fails a build: if the file cannot be used, it works in memory for this build and says why in
    `problem`.
    """

    def __init__(self, path: Path, model: str, tokenizer: str = ""):
        self.path = Path(path)
        self.model = model
        self.models = {model}  # every encoder whose vectors this build read or wrote (see `get`)
        self.tokenizer = tokenizer
        self.connection, self.problem = open_cache(self.path, self._prepare, "embedding cache", "every passage is embedded")

    def _prepare(self, connection: sqlite3.Connection) -> None:
        connection.executescript(_SCHEMA)
        with self._transaction(connection):
            row = connection.execute("SELECT generation FROM generations WHERE model = '*'").fetchone()
            self.generation = (row[0] if row else 0) + 1
            connection.execute("INSERT OR REPLACE INTO generations (model, generation) VALUES ('*', ?)", (self.generation,))

    def _give_up(self, problem: str) -> None:
        if getattr(self, "connection", None) is not None:
            self.connection.close()
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
            raise
        connection.execute("COMMIT")

    def get(self, texts: list[str], model: str | None = None) -> list[np.ndarray | None]:
        """The cached vector of each text, or None where there is none; marks the found rows as used.

        `model` names another encoder whose vectors the build keeps here too (questions of the
        relevance background, the second encoder's); by default the cache's own model."""
        if model is not None:
            self.models.add(model)
        found = self._get("vectors", "model", model or self.model, "vector", texts)
        return [None if blob is None else np.frombuffer(blob, dtype=np.float32) for blob in found]

    def put(self, texts: list[str], vectors: np.ndarray, model: str | None = None) -> None:
        """Store the vector of each text (one transaction: all of them or, if killed, none)."""
        if model is not None:
            self.models.add(model)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self._put("vectors", "model", model or self.model, "vector", texts, [vector.tobytes() for vector in vectors])

    def get_tokens(self, texts: list[str]) -> list[list[str] | None]:
        """The cached keyword tokens of each text (for this cache's tokenizer), or None where there are none."""
        found = self._get("tokens", "tokenizer", self.tokenizer, "tokens", texts)
        return [None if joined is None else (joined.split(_SEPARATOR) if joined else []) for joined in found]

    def put_tokens(self, texts: list[str], token_lists: list[list[str]]) -> None:
        """Store the keyword tokens of each text."""
        self._put("tokens", "tokenizer", self.tokenizer, "tokens", texts, [_SEPARATOR.join(tokens) for tokens in token_lists])

    def _get(self, table: str, owner_column: str, owner: str, value_column: str, texts: list[str]) -> list:
        keys = [text_key(text) for text in texts]
        unique = list(dict.fromkeys(keys))
        found: dict[bytes, object] = {}
        try:
            with self._transaction():
                for start in range(0, len(unique), _PARAMETERS):
                    chunk = unique[start : start + _PARAMETERS]
                    marks = ",".join("?" * len(chunk))
                    rows = self.connection.execute(
                        f"SELECT key, {value_column} FROM {table} WHERE {owner_column} = ? AND key IN ({marks})",
                        (owner, *chunk),
                    ).fetchall()
                    found.update(rows)
                    self.connection.execute(
                        f"UPDATE {table} SET used = ? WHERE {owner_column} = ? AND key IN ({marks})",
                        (self.generation, owner, *chunk),
                    )
        except sqlite3.Error as error:
            self._give_up(f"embedding cache {self.path} cannot be read ({error}); everything is computed afresh")
            return [None] * len(keys)
        return [found.get(key) for key in keys]

    def _put(self, table: str, owner_column: str, owner: str, value_column: str, texts: list[str], values: list) -> None:
        rows = [(owner, text_key(text), self.generation, value) for text, value in zip(texts, values)]
        try:
            with self._transaction():
                self.connection.executemany(
                    f"INSERT OR REPLACE INTO {table} ({owner_column}, key, used, {value_column}) VALUES (?, ?, ?, ?)", rows
                )
        except sqlite3.Error as error:
            self._give_up(f"embedding cache {self.path} cannot be written ({error}); new results are not kept")

    def clear(self) -> None:
        """Forget every vector of this model (used when the model behind a name turns out to have changed)."""
        try:
            with self._transaction():
                self.connection.execute("DELETE FROM vectors WHERE model = ?", (self.model,))
        except sqlite3.Error as error:
            self._give_up(f"embedding cache {self.path} cannot be written ({error}); new vectors are not kept")

    def forget_unused(self) -> int:
        """Delete this model's and tokenizer's rows used by neither this build nor the previous one; returns how many."""
        try:
            with self._transaction():
                vectors = sum(
                    self.connection.execute(
                        "DELETE FROM vectors WHERE model = ? AND used < ?", (model, self.generation - 1)
                    ).rowcount
                    for model in sorted(self.models)
                )
                tokens = self.connection.execute(
                    "DELETE FROM tokens WHERE tokenizer = ? AND used < ?", (self.tokenizer, self.generation - 1)
                ).rowcount
        except sqlite3.Error:
            return 0
        return vectors + tokens

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> "EmbeddingCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

"""Where an index keeps its passages and vectors: one interface, two stores.

    local   (default) FAISS and passages.jsonl in the build folder (qa/index.py): embedded, no set-up
    milvus  a Milvus collection (qa/milvus_store.py): Milvus Lite in a .db file, or a Milvus server
            or cluster at http://host:19530

Either way a build writes a build folder with the manifest, the passage keys and the keyword and
relevance files, and `current` switches to it in one step (qa/index.py); the manifest's "store"
says which store holds the passages, so a reader loads what the build wrote. Both stores update the
previous build's passages by key instead of writing them all again: a passage's key is a hash of
everything about it (source, section, offsets, text, page, and its vector), so an unchanged passage
keeps its key across rebuilds and any change makes a new one.

Every store answers the same verbs:

    write(folder, previous, manifest, passages, keys, vectors) -> (files written, facts for the manifest)
    check(folder, manifest)    raise unless the written build loads; called before `current` moves
    open(folder, manifest)     the loaded index (qa/index.py `Index`, or a subclass)
    forget_before(manifest)    drop what no reader can need any more, once `current` has moved
"""

import hashlib
from pathlib import Path

import numpy as np

from .config import STORES, Config
from .errors import ConfigError, IndexCorruptError
from .passages import Passage


def passage_keys(passages: list[Passage], vectors: np.ndarray) -> np.ndarray:
    """The stable key of each passage (int64, never negative): a hash of its fields but the row
    number, and of its vector (a passage embedded again in another precision is a new passage).

    ValueError if two passages share a key (only two identical passages could).
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    keys = np.fromiter(
        (
            int.from_bytes(
                hashlib.blake2b(
                    "\x1f".join(str(value) for name, value in passage.to_dict().items() if name != "id").encode()
                    + vector.tobytes(),
                    digest_size=8,
                ).digest(),
                "little",
            ) & 0x7FFF_FFFF_FFFF_FFFF
            for passage, vector in zip(passages, vectors)
        ),
        dtype=np.int64,
        count=len(passages),
    )
    if len(np.unique(keys)) != len(keys):
        raise ValueError("two passages have the same key: the corpus holds one passage twice at the same place")
    return keys


class Store:
    """The base of the stores: see the module note for what each verb does."""

    kind = ""

    def write(self, folder: Path, previous: Path | None, manifest: dict, passages: list[Passage], keys: np.ndarray,
              vectors: np.ndarray) -> tuple[list[str], dict]:
        raise NotImplementedError

    def check(self, folder: Path, manifest: dict) -> None:
        self.open(folder, manifest)

    def open(self, folder: Path, manifest: dict):
        raise NotImplementedError

    def forget_before(self, manifest: dict) -> None:
        pass


class LocalStore(Store):
    """FAISS (id-mapped by passage key) and passages.jsonl in the build folder: see qa/index.py."""

    kind = "local"

    def write(self, folder, previous, manifest, passages, keys, vectors):
        from .index import write_local_vectors

        return write_local_vectors(folder, previous, manifest, passages, keys, vectors)

    def open(self, folder, manifest):
        from .index import load_local_folder

        return load_local_folder(folder, manifest)


def store_for(config: Config) -> Store:
    """The store a build with `config` writes to (`config.store`)."""
    if config.store == "local":
        return LocalStore()
    if config.store == "milvus":
        from .milvus_store import MilvusStore

        return MilvusStore(config.milvus_uri or str(Path(config.index_dir).resolve() / "milvus.db"), config.milvus_collection)
    raise ConfigError(f"the store must be one of {', '.join(STORES)}, not {config.store!r}")


def store_of(manifest: dict) -> Store:
    """The store that holds the passages of the build `manifest` describes."""
    facts = manifest.get("store") or {}
    if facts.get("kind") == "local":
        return LocalStore()
    if facts.get("kind") == "milvus":
        from .milvus_store import MilvusStore

        return MilvusStore(facts["uri"], facts["collection"])
    raise IndexCorruptError(f"the manifest names no store the index can be read from ({facts!r}); run `qa build` to rebuild it")

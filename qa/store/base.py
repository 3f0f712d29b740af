"""Where an index keeps its passages and vectors: one interface, two stores.

    local   (default) FAISS and passages.jsonl in the build folder (qa/store/folder.py): embedded, no set-up
    milvus  a Milvus collection (qa/store/milvus.py): Milvus Lite in a .db file, or a Milvus server
            or cluster at http://host:19530

Either way a build writes a build folder with the manifest, the passage keys and the keyword and
relevance files, and `current` switches to it in one step (qa/store/folder.py); the manifest's "store"
says which store holds the passages, so a reader loads what the build wrote. Both stores update the
previous build's passages by key instead of writing them all again: a passage's key is a hash of
everything about it (source, section, offsets, text, page, and its vector), so an unchanged passage
keeps its key across rebuilds and any change makes a new one.

Every store answers the same verbs:

    write(folder, previous, manifest, passages, keys, vectors) -> (files written, facts for the manifest)
    check(folder, manifest)    raise unless the written build loads; called before `current` moves
    open(folder, manifest)     the loaded index (qa/store/folder.py `Index`, or a subclass)
    forget_before(manifest)    drop what no reader can need any more, once `current` has moved
"""

import dataclasses
import hashlib
import operator
from pathlib import Path

import numpy as np

from qa.config import STORES, Config
from qa.errors import REBUILD_HINT, ConfigError, IndexCorruptError
from qa.passages import Passage


def passage_keys(passages: list[Passage], vectors: np.ndarray) -> np.ndarray:
    """The stable key of each passage (int64, never negative): a hash of its fields but the row
    number, and of its vector (a passage embedded again in another precision is a new passage).

    ValueError if two passages share a key (only two identical passages could).
    """
    fields = operator.attrgetter(*(f.name for f in dataclasses.fields(Passage) if f.name != "id"))
    digests = _vector_digests(vectors)
    keys = np.fromiter(
        (
            int.from_bytes(hashlib.blake2b("\x1f".join(map(str, fields(passage))).encode() + digest, digest_size=8).digest(), "little")
            & 0x7FFF_FFFF_FFFF_FFFF
            for passage, digest in zip(passages, digests)
        ),
        dtype=np.int64,
        count=len(passages),
    )
    if len(np.unique(keys)) != len(keys):
        raise ValueError("two passages have the same key: the corpus holds one passage twice at the same place")
    return keys


# Odd 64-bit multipliers, one per vector component (fixed: keys must be the same in every process).
_MULTIPLIERS = np.random.default_rng(20261130).integers(0, 2**63, size=4096, dtype=np.uint64) * np.uint64(2) + np.uint64(1)


def _vector_digests(vectors: np.ndarray) -> list[bytes]:
    """8 bytes per vector that change with any bit of it: a multiply-and-add hash of its float32 bits,
    computed for many rows at once (hashing each row's bytes in Python took 2 s a million)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.shape[1] % 2:  # read as pairs of float32, one uint64 each
        vectors = np.pad(vectors, ((0, 0), (0, 1)))
    if vectors.shape[1] // 2 > len(_MULTIPLIERS):
        raise ValueError(f"vectors of more than {2 * len(_MULTIPLIERS)} dimensions")
    multipliers = _MULTIPLIERS[: vectors.shape[1] // 2]
    digests = np.empty(len(vectors), dtype=np.uint64)
    with np.errstate(over="ignore"):  # wrapping around 2**64 is the point
        for start in range(0, len(vectors), 16_384):
            bits = vectors[start : start + 16_384].view(np.uint64)
            digests[start : start + 16_384] = (bits * multipliers).sum(axis=1, dtype=np.uint64)
    return [digest.tobytes() for digest in digests]


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
    """FAISS (id-mapped by passage key) and passages.jsonl in the build folder: see qa/store/folder.py."""

    kind = "local"

    def write(self, folder, previous, manifest, passages, keys, vectors):
        from qa.store.folder import write_local_vectors

        return write_local_vectors(folder, previous, manifest, passages, keys, vectors)

    def check(self, folder, manifest):
        from qa.store.folder import load_local_folder

        # The passages are counted, not parsed: json.dumps wrote them a moment ago, and parsing a million
        # lines was a quarter of a one-file update. The vector index is read and checked against the keys.
        load_local_folder(folder, manifest, read_passages=False)

    def open(self, folder, manifest):
        from qa.store.folder import load_local_folder

        return load_local_folder(folder, manifest)


def store_for(config: Config) -> Store:
    """The store a build with `config` writes to (`config.store`)."""
    if config.store == "local":
        return LocalStore()
    if config.store == "milvus":
        from qa.store.milvus import MilvusStore

        return MilvusStore(config.milvus_uri or str(Path(config.index_dir).resolve() / "milvus.db"), config.milvus_collection)
    raise ConfigError(f"the store must be one of {', '.join(STORES)}, not {config.store!r}")


def store_of(manifest: dict) -> Store:
    """The store that holds the passages of the build `manifest` describes."""
    facts = manifest.get("store") or {}
    if facts.get("kind") == "local":
        return LocalStore()
    if facts.get("kind") == "milvus":
        from qa.store.milvus import MilvusStore

        return MilvusStore(facts["uri"], facts["collection"])
    raise IndexCorruptError(f"the manifest names no store the index can be read from ({facts!r}); {REBUILD_HINT}")

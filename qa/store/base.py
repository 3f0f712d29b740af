"""Where an index keeps its passages and vectors: one interface, with the same verbs in every store.

    local   (default) FAISS and passages.jsonl in the build folder (qa/store/local.py): embedded, no set-up
    milvus  a Milvus collection (qa/store/milvus.py): Milvus Lite in a .db file, or a Milvus server
            or cluster at http://host:19530

qa/store/factory.py picks the store by name. Either way a build writes a build folder with the
manifest, the passage keys and the keyword and relevance files, and `current` switches to it in one
step (qa/store/folder.py); the manifest's "store" says which store holds the passages, so a reader
loads what the build wrote. Both stores update the previous build's passages by key instead of
writing them all again: a passage's key is a hash of everything about it (source, section, offsets,
text, page, and its vector), so an unchanged passage keeps its key across rebuilds and any change
makes a new one.

A `Store` answers:

    write(folder, previous, manifest, passages, keys, vectors) -> (files written, facts for the manifest)
    check(folder, manifest)      raise unless the written build loads; called before `current` moves
    open(folder, manifest)       the loaded `PassageIndex`
    passages(folder, manifest)   the build's passages, without its vectors where the store can
    forget_before(manifest)      drop what no reader can need any more, once `current` has moved

and the `PassageIndex` that `open` gives answers, in every store:

    search(question_vectors, k, within)                 the k nearest passages by cosine similarity
    candidates(question_vectors, k, questions, within)  the passages the store proposes for scoring, best first
    vector_matrix(), rows_of(keys), approximate, stale, passages, manifest, model, folder

`within` (a `Scope`, None for the whole index) limits a search to some collections and documents inside
the store's own search (a FAISS selector, a Milvus filter expression), so that k passages of the scope
still come back however small a part of the index it is.
"""

import dataclasses
import hashlib
import operator
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qa.config import Config
from qa.documents.corpus import file_hash
from qa.errors import REBUILD_HINT, IndexCorruptError
from qa.passages import Passage

KEYS = "keys.npy"  # the stable key of passage n, in every store's build folder


@dataclass(frozen=True, eq=False)
class Scope:
    """The part of an index a search is limited to, resolved from names by qa/search/scope.py.

    `names`: the collections and documents named, as resolved (a collection is a folder of the corpus, a
    document its source path); `collections` and `documents`: the same names by kind; `sources`: every
    document in scope, sorted; `rows`: the passages in scope (sorted rows of the index) and `mask` the
    same as one flag per passage.
    """

    names: tuple[str, ...]
    collections: tuple[str, ...]
    documents: tuple[str, ...]
    sources: tuple[str, ...]
    rows: np.ndarray
    mask: np.ndarray


@dataclass(frozen=True)
class Build:
    """A build folder and its manifest, read once (qa/store/folder.py `last_build`)."""

    folder: Path
    manifest: dict


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
    computed for many rows at once (hashing each row's bytes in Python is far slower)."""
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


def read_keys(folder: Path, manifest: dict) -> np.ndarray:
    """The passage keys of a build folder (row i = passage i), checked against the manifest's count."""
    try:
        keys = np.load(folder / KEYS, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise IndexCorruptError(f"{folder / KEYS} cannot be read ({error}); {REBUILD_HINT}") from None
    if keys.dtype != np.int64 or keys.ndim != 1 or len(keys) != manifest["counts"]["passages"]:
        raise IndexCorruptError(f"{folder / KEYS} does not hold {manifest['counts']['passages']} passage keys; {REBUILD_HINT}")
    return keys


def check_files(folder: Path, manifest: dict, names: tuple[str, ...] | None = None) -> None:
    """Check the files of a build folder (or only `names`) against the sizes and checksums in its
    manifest; IndexCorruptError naming the first that differs."""
    for name, facts in manifest.get("files", {}).items():
        if names is not None and name not in names:
            continue
        path = folder / name
        if not path.exists():
            raise IndexCorruptError(f"{path} is missing; {REBUILD_HINT}")
        if path.stat().st_size != facts["bytes"]:
            raise IndexCorruptError(
                f"{path} has {path.stat().st_size} bytes, the manifest says {facts['bytes']} "
                f"(truncated or changed); {REBUILD_HINT}"
            )
        if file_hash(path) != facts["sha256"]:
            raise IndexCorruptError(f"{path} does not match its checksum (damaged); {REBUILD_HINT}")


class PassageIndex:
    """A loaded, checked index: `passages[i]` is the passage whose key is `keys[i]`; what retrieval reads.

    `search` gives cosine similarities (inner products of normalised vectors) in every store;
    `candidates` gives the passages a store proposes for scoring, which by default are the nearest.
    """

    def __init__(self, folder: Path, manifest: dict, passages: list[Passage], keys: np.ndarray | None = None):
        self.folder = folder
        self.manifest = manifest
        self.passages = passages
        self.keys = np.zeros(0, np.int64) if keys is None else keys
        order = np.argsort(self.keys, kind="stable")
        self._sorted_keys, self._rows_by_sorted_key = self.keys[order], order

    @property
    def model(self) -> str:
        return self.manifest["model"]

    def rows_of(self, keys: np.ndarray) -> np.ndarray:
        """The passage rows of passage keys (-1 for a key this index does not hold)."""
        keys = np.asarray(keys, dtype=np.int64)
        at = np.minimum(np.searchsorted(self._sorted_keys, keys), max(len(self._sorted_keys) - 1, 0))
        found = (len(self._sorted_keys) > 0) & (self._sorted_keys[at] == keys) if len(keys) else np.zeros(0, bool)
        return np.where(found, self._rows_by_sorted_key[at] if len(self._sorted_keys) else -1, -1)

    @property
    def approximate(self) -> bool:
        """Whether `search` and `candidates` may miss some of the exact nearest passages."""
        raise NotImplementedError

    def vector_matrix(self) -> np.ndarray:
        """All passage vectors (row i = passage i), read-only."""
        raise NotImplementedError

    @property
    def stale(self) -> np.ndarray:
        """Keys the vector index holds for passages that are gone; searches skip them. None by default."""
        return np.zeros(0, np.int64)

    def search(self, question_vectors: np.ndarray, k: int, within: Scope | None = None) -> list[list[tuple[int, float]]]:
        """For each question vector, the rows and cosine similarities of its k nearest passages, best first;
        with `within`, its k nearest passages of that scope."""
        raise NotImplementedError

    def candidates(self, question_vectors: np.ndarray, k: int, questions: list[str],
                   within: Scope | None = None) -> list[list[int]]:
        """For each question (its vector and its text), the rows of the passages worth scoring, best first:
        its k nearest here; a store that also searches by keywords adds its own best (qa/store/milvus.py).
        With `within`, only passages of that scope."""
        return [[row for row, _ in hits] for hits in self.search(question_vectors, k, within)]


class Store:
    """The base of the stores: see the module note for what each verb does."""

    kind = ""
    # What `write` tells of its adding vectors to the vector index, progress(added, total), if anything:
    # set by the build for its write (qa/store/folder.py write_index); a store that adds them at once says nothing.
    progress: Callable[[int, int], None] | None = None

    @classmethod
    def from_config(cls, config: Config) -> "Store":
        """The store a build with `config` writes to."""
        raise NotImplementedError

    @classmethod
    def from_manifest(cls, facts: dict) -> "Store":
        """The store that holds a build's passages, from its manifest's "store" `facts`."""
        raise NotImplementedError

    def write(self, folder: Path, previous: Build | None, manifest: dict, passages: list[Passage], keys: np.ndarray,
              vectors: np.ndarray) -> tuple[list[str], dict]:
        raise NotImplementedError

    def check(self, folder: Path, manifest: dict) -> None:
        self.open(folder, manifest)

    def open(self, folder: Path, manifest: dict) -> PassageIndex:
        raise NotImplementedError

    def passages(self, folder: Path, manifest: dict) -> list[Passage]:
        check_files(folder, manifest)
        return self.open(folder, manifest).passages

    def forget_before(self, manifest: dict) -> None:
        pass

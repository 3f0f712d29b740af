"""The persisted index: FAISS vectors, the passages they stand for, and a manifest that describes them.

Layout of the index folder:

    index/current          -> builds/<build id>   (a symbolic link, replaced in one step)
    index/builds/<id>/manifest.json              model, dimension, chunking, source hashes, counts,
                                                 versions, build time, and the size and sha256 of
    index/builds/<id>/passages.jsonl             one passage per line, line n = passage n
    index/builds/<id>/keys.npy                   the stable key of passage n (qa/store/base.py)
    index/builds/<id>/vectors.faiss              inner product over normalised float32 vectors,
                                                 id-mapped by passage key (IndexIDMap2): exact
                                                 (Flat) for small corpora, approximate (HNSW, or
                                                 IVF by choice) for large ones
    index/builds/<id>/keywords.npz, background.json, second.npy
                                                 BM25 counts (qa/search/keyword.py), how off-topic
                                                 questions score (qa/decision/relevance.py), the second
                                                 encoder's passage vectors (qa/embeddings/second_encoder.py)

A rebuild updates the previous build's vector index instead of making a new one: it reads it,
removes the keys of passages that are gone, adds those of new passages, and writes the result into
the new build folder (copy-on-write: the previous build is never changed, so its readers never see a
half-update). HNSW cannot remove vectors: a removed passage's vector stays in the graph as a stale
key that searches skip, until stale keys reach a tenth of the index and a rebuild makes it afresh.
With `store` "milvus" in the manifest the passages and vectors live in Milvus instead
(qa/store/milvus.py) and the folder holds only the manifest, the keys, the keyword, background
and second-encoder files.

A build writes a complete new folder, checks it, and only then points `current` at it, so a reader
sees either the old index or the new one, never half of each. FAISS's own reader checks nothing,
so `load_index` checks every file against the manifest before trusting it.

The manifest's "vector_index" names the FAISS index (its factory string) and its search
parameters (efSearch, nprobe), which `load_index` applies again: FAISS keeps some of them in the
file and not others, and the manifest is the one place that says what the index is.

POSIX only (Linux, macOS): `current` is a symbolic link replaced by rename, and the build lock is
an flock that the system drops when a build dies; the lock file also names the build holding it.

Longer than most modules (~450 lines): writing, checking and loading the index folder belong
together, since every check on load mirrors a fact recorded on write.
"""

import contextlib
import fcntl
import importlib.metadata
import json
import os
import platform
import shutil
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import faiss
import numpy as np

from qa import __version__
from qa.documents.corpus import file_hash
from qa.errors import REBUILD_HINT, BuildLockedError, IndexCorruptError, IndexMismatchError, IndexMissingError, IndexWriteError
from qa.passages import Passage

FORMAT_VERSION = 2  # 2: vectors id-mapped by passage key, keys.npy, a store
MANIFEST = "manifest.json"
PASSAGES = "passages.jsonl"
VECTORS = "vectors.faiss"
KEYS = "keys.npy"
# An HNSW index is made afresh when its stale keys (removed passages it still holds) reach this share.
MAX_STALE_SHARE = 0.1
_CURRENT = "current"
_BUILDS = "builds"
_LOCK = ".build.lock"


@dataclass
class Index:
    """A loaded, checked index: passages[i] is the passage whose key is keys[i].

    `vectors` is the FAISS index itself (Flat, HNSW, IVF) and `mapped` the id map around it that
    searches by passage key; their storage order is the order vectors were added, which after
    incremental updates is not the passages' order (`vector_matrix` puts them in that order).
    """

    folder: Path
    manifest: dict
    passages: list[Passage]
    vectors: faiss.Index | None
    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    mapped: faiss.IndexIDMap2 | None = None

    def __post_init__(self):
        order = np.argsort(self.keys, kind="stable")
        self._sorted_keys, self._rows_by_sorted_key = self.keys[order], order
        self._stale: np.ndarray | None = None

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
        """Whether `search` is approximate (HNSW, IVF): it may miss some of the exact nearest passages."""
        return self.manifest.get("vector_index", FLAT)["type"] != "flat"

    def vector_matrix(self) -> np.ndarray:
        """All passage vectors (row i = passage i), read-only.

        For Flat and HNSW built in one go it is a view of FAISS's own memory, not a copy (a million
        vectors are 1.5 GB): keep this Index alive while using it. After incremental updates the
        storage is in the order vectors were added, and this is a copy in passage order.
        """
        count, dimension = self.vectors.ntotal, self.vectors.d
        storage = self.vectors.storage if isinstance(self.vectors, faiss.IndexHNSWFlat) else self.vectors
        storage = faiss.downcast_index(storage)
        if count == 0 or not isinstance(storage, faiss.IndexFlat):
            matrix = self.vectors.reconstruct_n(0, count) if count else np.zeros((0, dimension), np.float32)
        else:
            matrix = faiss.rev_swig_ptr(storage.get_xb(), count * dimension).reshape(count, dimension)
        stored = faiss.vector_to_array(self.mapped.id_map) if self.mapped is not None else self.keys
        if not np.array_equal(stored, self.keys):
            order = np.argsort(stored, kind="stable")
            matrix = matrix[order[np.searchsorted(stored, self.keys, sorter=order)]]
        matrix.flags.writeable = False
        return matrix

    @property
    def stale(self) -> np.ndarray:
        """Keys the vector index holds for passages that are gone (HNSW cannot remove them); searches skip them."""
        if self._stale is None:
            held = faiss.vector_to_array(self.mapped.id_map) if self.mapped is not None else self.keys
            self._stale = np.setdiff1d(held, self.keys)
        return self._stale

    def search(self, question_vectors: np.ndarray, k: int, questions: list[str] | None = None) -> list[list[tuple[int, float]]]:
        """For each question vector, the rows and cosine scores of its k nearest passages, best first.

        `questions` (their text) is for stores that also search by keywords (qa/store/milvus.py).
        """
        k = min(k, len(self.passages))
        if k == 0:
            return [[] for _ in range(len(question_vectors))]
        question_vectors = np.ascontiguousarray(question_vectors, dtype=np.float32)
        if self.mapped is None:  # an index made in memory without an id map (scripts/benchmark.py): rows are ids
            scores, rows = self.vectors.search(question_vectors, k)
            return [[(int(i), float(s)) for i, s in zip(r, sc) if i >= 0] for r, sc in zip(rows, scores)]
        params = None
        if len(self.stale):
            params = faiss.SearchParametersHNSW(
                sel=faiss.IDSelectorNot(faiss.IDSelectorBatch(self.stale)), efSearch=self.vectors.hnsw.efSearch
            )
        scores, keys = self.mapped.search(question_vectors, k, params=params)
        return [
            [(int(i), float(s)) for i, s in zip(self.rows_of(row_keys), row_scores) if i >= 0]
            for row_keys, row_scores in zip(keys, scores)
        ]


VECTOR_INDEXES = ("auto", "flat", "hnsw", "ivf")
FLAT = {"type": "flat", "factory": "Flat"}
# HNSW: 32 links per vector (+272 bytes on top of the vector's 1,536), FAISS's default efConstruction,
# and efSearch 128: recall@10 against exact search 0.995, p95 0.7 ms per question, on 1M vectors
# drawn like the model's embeddings (scripts/benchmark.py measures it).
HNSW_LINKS = 32
HNSW_EF_CONSTRUCTION = 40
HNSW_EF_SEARCH = 128
_INDEX_CLASSES = {"flat": faiss.IndexFlat, "hnsw": faiss.IndexHNSWFlat, "ivf": faiss.IndexIVFFlat}


def choose_vector_index(passages: int, kind: str = "auto", approximate_from: int = 40_000) -> dict:
    """The vector index for `passages` vectors, as recorded in the manifest's "vector_index".

    kind "auto" is exact search ("flat") below `approximate_from` passages and HNSW from there on;
    "flat", "hnsw" and "ivf" force one. Exact search reads every vector for every question: the
    hybrid search over it grows by ~0.13 ms per 1,000 passages (13.5 ms at 100,000, ~90 ms at 1M),
    while over HNSW it takes ~4 ms at 30,000 and ~5.6 ms at 100,000; they cross near 40,000
    (scripts/benchmark.py, on a quiet core). IVF builds faster than HNSW (a k-means and one pass)
    but searches ~10x slower.
    """
    if kind not in VECTOR_INDEXES:
        raise ValueError(f"unknown vector index {kind!r}; choose one of {', '.join(VECTOR_INDEXES)}")
    if kind == "auto":
        kind = "flat" if passages < approximate_from else "hnsw"
    if kind == "flat":
        return dict(FLAT)
    if kind == "hnsw":
        return {"type": "hnsw", "factory": f"HNSW{HNSW_LINKS},Flat",
                "ef_construction": HNSW_EF_CONSTRUCTION, "ef_search": HNSW_EF_SEARCH}
    # About sqrt(n) lists, each trained from at least 39 vectors (FAISS's minimum per centroid);
    # probing a 64th of them, at least 8: recall@10 0.98, p95 5 ms on 1M vectors (scripts/benchmark.py).
    lists = max(1, min(2 ** round(np.log2(max(passages, 1)) / 2), passages // 39))
    return {"type": "ivf", "factory": f"IVF{lists},Flat", "nprobe": min(lists, max(8, lists // 64))}


def new_vector_index(dimension: int, settings: dict | None = None) -> faiss.Index:
    """An empty inner-product index as `settings` (from `choose_vector_index`) describe; exact if None.

    With normalised vectors the scores are cosine similarities.
    """
    settings = settings or FLAT
    if settings["type"] == "flat":
        return faiss.IndexFlatIP(dimension)
    index = faiss.index_factory(dimension, settings["factory"], faiss.METRIC_INNER_PRODUCT)
    if settings["type"] == "hnsw":
        index.hnsw.efConstruction = settings["ef_construction"]
    _apply_search_parameters(index, settings)
    return index


def fill_vector_index(index: faiss.Index, vectors: np.ndarray) -> None:
    """Train `index` if its type needs it (IVF learns its lists from the vectors), then add the vectors."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if not index.is_trained:
        index.train(vectors)
    index.add(vectors)


def _apply_search_parameters(index: faiss.Index, settings: dict) -> None:
    if settings["type"] == "hnsw":
        index.hnsw.efSearch = settings["ef_search"]
    elif settings["type"] == "ivf":
        index.nprobe = settings["nprobe"]


def make_manifest(
    model: str,
    dimension: int,
    chunking: dict,
    sources: dict[str, str],
    documents: int,
    passages: int,
    vector_index: dict | None = None,
) -> dict:
    """The manifest of a new build; `vector_index` comes from `choose_vector_index` (exact if None)."""
    return {
        "format": FORMAT_VERSION,
        "model": model,
        "dimension": dimension,
        "chunking": chunking,
        "sources": sources,
        "counts": {"documents": documents, "passages": passages},
        "vector_index": vector_index or dict(FLAT),
        "versions": {
            "qa": __version__,
            "faiss": faiss.__version__,
            # Read from the installed metadata: importing torch just to name its version costs seconds.
            "sentence_transformers": importlib.metadata.version("sentence-transformers"),
            "torch": importlib.metadata.version("torch"),
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


@contextmanager
def build_lock(index_dir: Path):
    """Hold the index folder's build lock; raise BuildLockedError if another build holds it.

    The lock is an flock, so the system drops it when a build dies, even by kill -9. A build that
    fails in a folder the lock had to create leaves no empty folder behind.
    """
    created = not index_dir.exists()
    try:
        index_dir.mkdir(parents=True, exist_ok=True)
        lock_file = open(index_dir / _LOCK, "a+")
    except OSError as error:
        raise _write_error(index_dir, error) from None
    with lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.seek(0)
            holder = lock_file.read().strip() or "another process"
            raise BuildLockedError(
                f"another build of {index_dir} is running ({holder}); wait for it to finish"
            ) from None
        try:  # who holds the lock, for the message above; unbuffered, so a full disk cannot fail a later flush
            os.ftruncate(lock_file.fileno(), 0)
            os.write(lock_file.fileno(), f"pid {os.getpid()} since {datetime.now().isoformat(timespec='seconds')}".encode())
        except OSError:
            pass  # only the message is lost
        try:
            yield
        except BaseException:
            if created:  # e.g. the corpus folder does not exist: leave no empty index folder behind
                with contextlib.suppress(OSError):
                    (index_dir / _LOCK).unlink()
                    index_dir.rmdir()  # only if nothing else was written there
            raise
        finally:
            lock_file.truncate(0)
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def write_index(
    index_dir: Path,
    manifest: dict,
    passages: list[Passage],
    vectors: np.ndarray,
    extra_files: dict[str, Callable[[Path], None]] | None = None,
    store=None,
) -> Path:
    """Write a complete index into a new build folder, check it, then make it current in one step.

    `extra_files` maps a file name to a function that writes that file (e.g. the keyword index);
    those files are checksummed in the manifest like the others. `store` (qa/store/base.py) keeps the
    passages and vectors, updating the previous build's; the local store (FAISS files in the build
    folder) if None. Call it while holding `build_lock`. Returns the new build folder. If anything
    fails, the previous index stays current and the partial folder is removed.
    """
    from qa.store.base import LocalStore, passage_keys

    store = store or LocalStore()
    extra_files = extra_files or {}
    builds = index_dir / _BUILDS
    folder = builds / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 10**6:06d}"
    try:
        previous_folder = current_build(index_dir)
        _read_manifest(previous_folder)
    except (IndexMissingError, IndexCorruptError, IndexMismatchError):
        previous_folder = None
    try:
        folder.mkdir(parents=True)
        keys = passage_keys(passages, vectors)
        np.save(folder / KEYS, keys)
        written, facts = store.write(folder, previous_folder, manifest, passages, keys, vectors)
        for name, write in extra_files.items():
            write(folder / name)
        names = (KEYS, *written, *extra_files)
        manifest = dict(manifest, store=facts, files={name: _file_facts(folder / name) for name in names})
        _write_json(folder / MANIFEST, manifest)
        _fsync_folder(folder)
        store.check(folder, manifest)  # never point `current` at an index that does not load
        _point_current_at(index_dir, folder)
    except BaseException as error:
        shutil.rmtree(folder, ignore_errors=True)
        # A full disk or a read-only folder: FAISS reports its failed writes as RuntimeError.
        if isinstance(error, OSError) or (isinstance(error, RuntimeError) and "write error" in str(error)):
            raise _write_error(index_dir, error) from None
        raise
    # Keep the build that was current until now: a reader may have resolved `current` just before the switch.
    previous = previous_folder.name if previous_folder is not None else None
    _remove_old_builds(index_dir, keep={folder.name, previous})
    store.forget_before(manifest)
    return folder


def write_local_vectors(
    folder: Path, previous: Path | None, manifest: dict, passages: list[Passage], keys: np.ndarray, vectors: np.ndarray
) -> tuple[list[str], dict]:
    """Write the local store's files into `folder`: the passages and the id-mapped vector index, the
    previous build's updated when it can be (see the module note). Returns the files and the facts
    of the update for the manifest's "store"."""
    with open(folder / PASSAGES, "w", encoding="utf-8") as file:
        for passage in passages:
            # vars(), not to_dict(): the same fields without dataclasses.asdict's deep copy (half of a one-file update's time)
            file.write(json.dumps(vars(passage), ensure_ascii=False) + "\n")
    settings = manifest.get("vector_index") or dict(FLAT)
    mapped, update = _updated_vectors(previous, manifest, keys, vectors)
    if mapped is None:
        mapped = faiss.IndexIDMap2(new_vector_index(manifest["dimension"], settings))
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if not mapped.is_trained:
            mapped.train(vectors)
        mapped.add_with_ids(vectors, keys)
        update = {"update": "full", "added": len(keys), "removed": 0, "stale": 0}
    faiss.write_index(mapped, str(folder / VECTORS))
    return [PASSAGES, VECTORS], {"kind": "local", **update}


def _updated_vectors(
    previous: Path | None, manifest: dict, keys: np.ndarray, vectors: np.ndarray
) -> tuple[faiss.IndexIDMap2 | None, dict]:
    """The previous build's vector index with removed passages taken out and new ones added; None
    when it cannot be updated (none, another store, model, dimension or index type, or too stale)."""
    try:
        old = _read_manifest(previous) if previous is not None else None
    except (IndexCorruptError, IndexMismatchError):
        old = None
    settings = manifest.get("vector_index") or dict(FLAT)
    if (
        old is None or (old.get("store") or {}).get("kind") != "local" or old["model"] != manifest["model"]
        or old["dimension"] != manifest["dimension"] or old.get("vector_index") != settings
    ):
        return None, {}
    try:
        _check_files(previous, old, (VECTORS, KEYS))  # a damaged previous build is not built on
        mapped = faiss.read_index(str(previous / VECTORS))
        old_keys = np.load(previous / KEYS, allow_pickle=False)
    except (IndexCorruptError, OSError, RuntimeError, ValueError):
        return None, {}
    if not isinstance(mapped, faiss.IndexIDMap2):
        return None, {}
    removed = np.setdiff1d(old_keys, keys)
    if settings["type"] != "hnsw":
        mapped.remove_ids(faiss.IDSelectorBatch(removed))
    held = faiss.vector_to_array(mapped.id_map)
    new_rows = np.flatnonzero(~np.isin(keys, held))  # a stale key that comes back is live again
    stale = len(held) + len(new_rows) - len(keys)
    if stale > MAX_STALE_SHARE * max(len(keys), 1):
        return None, {}
    if len(new_rows):
        mapped.add_with_ids(np.ascontiguousarray(vectors[new_rows], dtype=np.float32), keys[new_rows])
    return mapped, {"update": "incremental", "from": previous.name, "added": int(len(new_rows)),
                    "removed": int(len(removed)), "stale": int(stale)}


def load_index(index_dir: Path, model: str | None = None) -> Index:
    """Load the current index, checked against its manifest.

    Raises IndexMissingError (never built), IndexCorruptError (truncated or damaged files) or
    IndexMismatchError (built with another model than `model`, or by an incompatible version).
    """
    for attempt in range(3):
        folder = current_build(index_dir)
        try:
            index = _load_folder(folder)
            break
        except (FileNotFoundError, IndexCorruptError) as error:
            # Two builds finished while this one was loading and the second removed this folder:
            # read the new current one. A folder that is still current is really damaged.
            if attempt == 2 or current_build(index_dir) == folder:
                if isinstance(error, FileNotFoundError):
                    raise IndexCorruptError(f"{error.filename} disappeared while loading; {REBUILD_HINT}") from None
                raise
    if model is not None and index.model != model:
        raise IndexMismatchError(
            f"the index in {index_dir} was built with model {index.model!r}, not {model!r}; "
            f"run `qa build --model {model}` to rebuild it, or ask with --model {index.model}"
        )
    return index


def load_passages(index_dir: Path) -> list[Passage]:
    """The passages of the current index, their file checked against the manifest, without reading or
    checking its vectors and other files (what a rebuild keeps of it). An index whose passages live
    in its store (Milvus) is loaded whole."""
    folder = current_build(index_dir)
    manifest = _read_manifest(folder)
    if PASSAGES not in manifest.get("files", {}):
        return _load_folder(folder).passages
    _check_files(folder, manifest, names=(PASSAGES,))
    passages = _read_passages(folder / PASSAGES)
    if len(passages) != manifest["counts"]["passages"]:
        raise IndexCorruptError(f"{folder / PASSAGES} holds {len(passages)} passages, the manifest says "
                                f"{manifest['counts']['passages']}; {REBUILD_HINT}")
    return passages


def read_manifest(index_dir: Path) -> dict:
    """The manifest of the current index (checked only for being valid JSON of a known format)."""
    return _read_manifest(current_build(index_dir))


def current_build(index_dir: Path) -> Path:
    link = index_dir / _CURRENT
    if not link.is_symlink() and not link.exists():
        raise IndexMissingError(f"no index in {index_dir}: run `qa build` to build one")
    target = index_dir / os.readlink(link) if link.is_symlink() else link
    if not target.is_dir():
        raise IndexCorruptError(f"{link} points at a missing build ({target.name}); {REBUILD_HINT}")
    return target


def _load_folder(folder: Path) -> Index:
    from qa.store.base import store_of

    manifest = _read_manifest(folder)
    _check_files(folder, manifest)
    return store_of(manifest).open(folder, manifest)


def _check_files(folder: Path, manifest: dict, names: tuple[str, ...] | None = None) -> None:
    """Check the files of a build folder (or only `names`) against the sizes and checksums in its manifest."""
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


def read_keys(folder: Path, manifest: dict) -> np.ndarray:
    """The passage keys of a build folder (row i = passage i), checked against the manifest's count."""
    try:
        keys = np.load(folder / KEYS, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise IndexCorruptError(f"{folder / KEYS} cannot be read ({error}); {REBUILD_HINT}") from None
    if keys.dtype != np.int64 or keys.ndim != 1 or len(keys) != manifest["counts"]["passages"]:
        raise IndexCorruptError(f"{folder / KEYS} does not hold {manifest['counts']['passages']} passage keys; {REBUILD_HINT}")
    return keys


def load_local_folder(folder: Path, manifest: dict, read_passages: bool = True) -> Index:
    """The local store's index in a build folder whose files were checked against `manifest`.

    `read_passages` False only counts the lines of the passages file (the Index then has no passages):
    the check of a build just written."""
    try:
        mapped = faiss.read_index(str(folder / VECTORS))
    except RuntimeError as error:
        raise IndexCorruptError(f"{folder / VECTORS} cannot be read by FAISS ({error}); {REBUILD_HINT}") from None
    vectors = _check_vector_index(mapped, manifest, folder)
    if read_passages:
        passages = _read_passages(folder / PASSAGES)
        count = len(passages)
    else:
        passages, count = [], _count_lines(folder / PASSAGES)
    keys = read_keys(folder, manifest)
    expected = manifest["counts"]["passages"]
    stored = faiss.vector_to_array(mapped.id_map)
    if count != expected or vectors.d != manifest["dimension"] or not np.isin(keys, stored).all():
        raise IndexCorruptError(
            f"index in {folder} is inconsistent: {vectors.ntotal} vectors of dimension {vectors.d}, "
            f"{count} passages, manifest says {expected} of dimension {manifest['dimension']}; {REBUILD_HINT}"
        )
    return Index(folder=folder, manifest=manifest, passages=passages, vectors=vectors, keys=keys, mapped=mapped)


def _count_lines(path: Path) -> int:
    count = 0
    with open(path, "rb") as file:
        while block := file.read(1 << 24):
            count += block.count(b"\n")
    return count


def _check_vector_index(mapped: faiss.Index, manifest: dict, folder: Path) -> faiss.Index:
    """Check that the FAISS file holds the id-mapped index type the manifest names, apply its search
    parameters, and return the index inside the id map."""
    settings = manifest.get("vector_index", FLAT)  # manifests written before index types were exact
    expected = _INDEX_CLASSES.get(settings.get("type") if isinstance(settings, dict) else None)
    vectors = faiss.downcast_index(mapped.index) if isinstance(mapped, faiss.IndexIDMap2) else mapped
    if vectors is not mapped:
        vectors.referenced_objects = [mapped]  # the id map owns this index: it must outlive every use of it
    if (
        expected is None or not isinstance(mapped, faiss.IndexIDMap2) or not isinstance(vectors, expected)
        or vectors.metric_type != faiss.METRIC_INNER_PRODUCT
    ):
        raise IndexCorruptError(
            f"{folder / VECTORS} holds a {type(vectors).__name__}, the manifest names vector index "
            f"{settings!r}; {REBUILD_HINT}"
        )
    _apply_search_parameters(vectors, settings)
    if settings["type"] == "ivf":
        vectors.make_direct_map()  # so that vectors can be read back by id (reconstruct)
    return vectors


def _read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IndexCorruptError(f"{path} is missing; {REBUILD_HINT}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise IndexCorruptError(f"{path} is not valid JSON (truncated or damaged); {REBUILD_HINT}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION:
        raise IndexMismatchError(
            f"{path} is index format {manifest.get('format') if isinstance(manifest, dict) else '?'}, "
            f"this version reads format {FORMAT_VERSION}; {REBUILD_HINT}"
        )
    missing = {"model", "dimension", "chunking", "sources", "counts", "files"} - manifest.keys()
    if missing:
        raise IndexCorruptError(f"{path} lacks {', '.join(sorted(missing))}; {REBUILD_HINT}")
    return manifest


def _read_passages(path: Path) -> list[Passage]:
    passages = []
    try:
        with open(path, encoding="utf-8") as file:
            for line in file:
                passages.append(Passage(**json.loads(line)))
    except (json.JSONDecodeError, TypeError, UnicodeDecodeError):
        raise IndexCorruptError(f"{path} line {len(passages) + 1} is damaged; {REBUILD_HINT}") from None
    for number, passage in enumerate(passages):
        if passage.id != number:
            raise IndexCorruptError(f"{path} is out of order at line {number + 1}; {REBUILD_HINT}")
    return passages


def _point_current_at(index_dir: Path, folder: Path) -> None:
    temporary = index_dir / f".{_CURRENT}.{os.getpid()}"
    if temporary.is_symlink() or temporary.exists():
        temporary.unlink()
    os.symlink(folder.relative_to(index_dir), temporary)
    os.replace(temporary, index_dir / _CURRENT)  # atomic: readers see the old or the new target
    _fsync_folder(index_dir)


def _remove_old_builds(index_dir: Path, keep: set[str | None]) -> None:
    # Also removes what builds killed midway left (kill -9 skips every clean-up): their partial
    # folders and temporary links. The caller holds the build lock, so none of them is in use.
    for old in (index_dir / _BUILDS).iterdir():
        if old.name not in keep:
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
    for link in index_dir.glob(f".{_CURRENT}.*"):
        link.unlink(missing_ok=True)


def _write_error(index_dir: Path, error: Exception) -> IndexWriteError:
    if isinstance(error, OSError):
        reason = error.strerror or str(error)
    else:  # FAISS: "... write error in <path>: 8147 != 153600 (No space left on device)"
        reason = str(error).rsplit("(", 1)[-1].rstrip(") \n") if str(error).rstrip().endswith(")") else "write error"
    try:
        current_build(index_dir)
        kept = "the previous index is still in use"
    except (IndexMissingError, IndexCorruptError):  # a first build: there is nothing to fall back on
        kept = "there is no index yet"
    return IndexWriteError(
        f"cannot write the new index in {index_dir} ({reason}); {kept}. "
        "Free some disk space (or make the folder writable) and run `qa build` again"
    )


def _file_facts(path: Path) -> dict:
    return {"bytes": path.stat().st_size, "sha256": file_hash(path)}


def _write_json(path: Path, value: dict) -> None:
    with open(path, "w", encoding="utf-8") as file:
        json.dump(value, file, ensure_ascii=False, indent=2)
        file.flush()
        os.fsync(file.fileno())


def _fsync_folder(folder: Path) -> None:
    for path in [*folder.iterdir(), folder]:
        if path.is_symlink():
            continue
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

"""The index folder: builds, the manifest that describes each, and the one-step switch between them.

Layout of the index folder:

    index/current          -> builds/<build id>   (a symbolic link, replaced in one step)
    index/builds/<id>/manifest.json              model, dimension, chunking, source hashes, counts,
                                                 versions, build time, the store that holds the
                                                 passages, and the size and sha256 of every file
    index/builds/<id>/keys.npy                   the stable key of passage n (qa/store/base.py)
    index/builds/<id>/passages.jsonl, vectors.faiss
                                                 the local store's passages and vectors
                                                 (qa/store/local.py); a Milvus build keeps them in
                                                 Milvus instead (qa/store/milvus.py)
    index/builds/<id>/keywords.npz, background.json, second.npy
                                                 BM25 counts (qa/search/keyword.py), how off-topic
                                                 questions score (qa/decision/relevance.py), the second
                                                 encoder's passage vectors (qa/embeddings/second_encoder.py)

A build writes a complete new folder through the store it was given, checks it, and only then points
`current` at it (`write_index`), so a reader sees either the old index or the new one, never half of
each. Every file is checked against the manifest before it is trusted (`load_index`).

POSIX only (Linux, macOS): `current` is a symbolic link replaced by rename, and the build lock is
an flock that the system drops when a build dies; the lock file also names the build holding it.
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
from datetime import datetime, timezone
from pathlib import Path

import faiss
import numpy as np

from qa import __version__
from qa.documents.corpus import file_hash
from qa.errors import REBUILD_HINT, BuildLockedError, IndexCorruptError, IndexMismatchError, IndexMissingError, IndexWriteError
from qa.passages import Passage
from qa.store.base import KEYS, Build, PassageIndex, Store, check_files, passage_keys
from qa.store.factory import store_of
from qa.store.local import FLAT

FORMAT_VERSION = 2  # 2: vectors id-mapped by passage key, keys.npy, a store
MANIFEST = "manifest.json"
_CURRENT = "current"
_BUILDS = "builds"
_LOCK = ".build.lock"


def file_stamp(path: Path) -> tuple[int, int, int] | None:
    """What tells that a file beside the index (verdict.json, memory.json) was written again since it was read:
    its modification time, size and inode (each is replaced whole, so a new file has a new inode); None
    without one."""
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_mtime_ns, found.st_size, found.st_ino


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
    store: Store,
    previous: Build | None,
    extra_files: dict[str, Callable[[Path], None]] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> Path:
    """Write a complete index into a new build folder, check it, then make it current in one step.

    `store` (qa/store/factory.py) keeps the passages and vectors, updating those of `previous`, the
    build in use (`last_build`, read under the same lock), which stays for readers that resolved
    `current` just before the switch. `extra_files` maps a file name to a function that writes that
    file (e.g. the keyword index); those files are checksummed in the manifest like the others. Call
    it while holding `build_lock`. Returns the new build folder. If anything fails, the previous index
    stays current and the partial folder is removed.

    `progress(stage, done, total)`: "writing" with the steps done of all of them (the store's passages
    and vectors, each extra file, the checksums, the check that it loads), 0 of them first and all of
    them once `current` has moved; and "vectors", the vectors the store added to its vector index so
    far, while it does (see `Store.progress`).
    """
    extra_files = extra_files or {}
    progress = progress or (lambda stage, done, total: None)
    steps = len(extra_files) + 3
    progress("writing", 0, steps)
    folder = index_dir / _BUILDS / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 10**6:06d}"
    try:
        folder.mkdir(parents=True)
        keys = passage_keys(passages, vectors)
        np.save(folder / KEYS, keys)
        store.progress = lambda done, total: progress("vectors", done, total)
        try:
            written, facts = store.write(folder, previous, manifest, passages, keys, vectors)
        finally:
            store.progress = None
        progress("writing", 1, steps)
        for step, (name, write) in enumerate(extra_files.items(), start=2):
            write(folder / name)
            progress("writing", step, steps)
        names = (KEYS, *written, *extra_files)
        manifest = dict(manifest, store=facts, files={name: _file_facts(folder / name) for name in names})
        _write_json(folder / MANIFEST, manifest)
        _fsync_folder(folder)
        progress("writing", steps - 1, steps)
        store.check(folder, manifest)  # never point `current` at an index that does not load
        _point_current_at(index_dir, folder)
    except BaseException as error:
        shutil.rmtree(folder, ignore_errors=True)
        # A full disk or a read-only folder: FAISS reports its failed writes as RuntimeError.
        if isinstance(error, OSError) or (isinstance(error, RuntimeError) and "write error" in str(error)):
            raise _write_error(index_dir, error) from None
        raise
    _remove_old_builds(index_dir, keep={folder.name, previous.folder.name if previous is not None else None})
    store.forget_before(manifest)
    progress("writing", steps, steps)
    return folder


def current_build(index_dir: Path) -> Path:
    """The build folder `current` points at; IndexMissingError (never built) or IndexCorruptError (a missing build)."""
    link = index_dir / _CURRENT
    if not link.is_symlink() and not link.exists():
        raise IndexMissingError(f"no index in {index_dir}: run `qa build` to build one")
    target = index_dir / os.readlink(link) if link.is_symlink() else link
    if not target.is_dir():
        raise IndexCorruptError(f"{link} points at a missing build ({target.name}); {REBUILD_HINT}")
    return target


def last_build(index_dir: Path) -> Build | None:
    """The build in use and its manifest, read once; None when there is none or it cannot be read
    (what a rebuild builds on and `qa status` compares with)."""
    try:
        folder = current_build(index_dir)
        return Build(folder, read_manifest(folder))
    except (IndexMissingError, IndexCorruptError, IndexMismatchError):
        return None


def checked_build(index_dir: Path) -> Build:
    """The build in use, its manifest read and its files checked against it (sizes and checksums),
    without opening its store: what `qa status` reports. Raises as `load_index` does."""
    return _read_current(index_dir, _checked)


def load_index(index_dir: Path, model: str | None = None) -> PassageIndex:
    """Load the current index, checked against its manifest.

    Raises IndexMissingError (never built), IndexCorruptError (truncated or damaged files) or
    IndexMismatchError (built with another model than `model`, or by an incompatible version).
    """
    index = _read_current(index_dir, lambda folder: _open(_checked(folder)))
    if model is not None and index.model != model:
        raise IndexMismatchError(
            f"the index in {index_dir} was built with model {index.model!r}, not {model!r}; "
            f"run `qa build --model {model}` to rebuild it, or ask with --model {index.model}"
        )
    return index


def load_passages(build: Build) -> list[Passage]:
    """The passages of `build`, checked against its manifest, without its vectors where its store keeps
    them apart (what a rebuild keeps of it)."""
    return store_of(build.manifest).passages(build.folder, build.manifest)


def _read_current(index_dir: Path, read: Callable[[Path], object]):
    """`read` of the current build folder. Two builds may finish while it reads and the second remove
    that folder: then the new current one is read; a folder that is still current is really damaged."""
    for attempt in range(3):
        folder = current_build(index_dir)
        try:
            return read(folder)
        except (FileNotFoundError, IndexCorruptError) as error:
            if attempt == 2 or current_build(index_dir) == folder:
                if isinstance(error, FileNotFoundError):
                    raise IndexCorruptError(f"{error.filename} disappeared while loading; {REBUILD_HINT}") from None
                raise


def _checked(folder: Path) -> Build:
    manifest = read_manifest(folder)
    check_files(folder, manifest)
    return Build(folder, manifest)


def _open(build: Build) -> PassageIndex:
    return store_of(build.manifest).open(build.folder, build.manifest)


def read_manifest(folder: Path) -> dict:
    """The manifest of the build folder `folder`, checked for being valid JSON of this format with every
    fact a reader needs (IndexCorruptError, IndexMismatchError); the one place a manifest is read."""
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

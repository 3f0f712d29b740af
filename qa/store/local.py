"""The local store: FAISS vectors and passages.jsonl in the build folder (qa/store/folder.py).

    passages.jsonl   one passage per line, line n = passage n (Passage.to_dict)
    vectors.faiss    inner product over normalised float32 vectors, id-mapped by passage key
                     (IndexIDMap2): exact (Flat) for small corpora, approximate (HNSW, or IVF by
                     choice) for large ones

A rebuild updates the previous build's vector index instead of making a new one: it reads it,
removes the keys of passages that are gone, adds those of new passages, and writes the result into
the new build folder (copy-on-write: the previous build is never changed, so its readers never see a
half-update). HNSW cannot remove vectors: a removed passage's vector stays in the graph as a stale
key that searches skip, until stale keys reach `Config.max_stale_share` of the index and a rebuild
makes it afresh.

The manifest's "vector_index" names the FAISS index (its factory string) and its search
parameters (efSearch, nprobe), which loading applies again: FAISS keeps some of them in the file
and not others, and the manifest is the one place that says what the index is. FAISS's own reader
checks nothing, so every file is checked against the manifest before it is trusted.
"""

import math
from pathlib import Path

import faiss
import numpy as np
import orjson

from qa.config import Config
from qa.errors import REBUILD_HINT, IndexCorruptError
from qa.passages import Passage
from qa.store.base import KEYS, Build, PassageIndex, Scope, Store, check_files, read_keys

PASSAGES = "passages.jsonl"
VECTORS = "vectors.faiss"
FLAT = {"type": "flat", "factory": "Flat"}
_ADD_CHUNK = 8192  # vectors added to an approximate index between two progress reports
_INDEX_CLASSES = {"flat": faiss.IndexFlat, "hnsw": faiss.IndexHNSWFlat, "ivf": faiss.IndexIVFFlat}
# A search limited to a scope of at most this many passages compares the question with every one of them
# (exact, ~1 ms at 11,000 passages; see `LocalIndex._search_within` for larger ones).
EXACT_WITHIN = 20_000


class LocalIndex(PassageIndex):
    """A loaded local index. `vectors` is the FAISS index itself (Flat, HNSW, IVF) and `mapped` the id
    map around it that searches by passage key; their storage order is the order vectors were added,
    which after incremental updates is not the passages' order (`vector_matrix` puts them in that order).

    Without `mapped` (an index made in memory, as scripts/benchmark.py does) rows are the ids.
    """

    def __init__(self, folder: Path, manifest: dict, passages: list[Passage], vectors: faiss.Index,
                 keys: np.ndarray | None = None, mapped: faiss.IndexIDMap2 | None = None):
        super().__init__(folder, manifest, passages, keys)
        self.vectors = vectors
        self.mapped = mapped
        self._stale: np.ndarray | None = None
        self._layout: tuple[np.ndarray, np.ndarray] | None = None  # `positions` and the row at each position

    @property
    def approximate(self) -> bool:
        """Whether `search` is approximate (HNSW, IVF): it may miss some of the exact nearest passages."""
        return self.manifest.get("vector_index", FLAT)["type"] != "flat"

    def vector_matrix(self) -> np.ndarray:
        """All passage vectors (row i = passage i), read-only.

        For Flat and HNSW built in one go it is a view of FAISS's own memory, not a copy (a million
        vectors are 1.5 GB): keep this index alive while using it. After incremental updates the
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

    def positions(self) -> tuple[np.ndarray, np.ndarray]:
        """Where passage i's vector is stored in `vectors` (FAISS's own numbering: the order vectors were
        added), and the passage row at each position (-1: a stale key); computed once per loaded index."""
        if self._layout is None:
            if self.mapped is None:
                rows = np.arange(self.vectors.ntotal, dtype=np.int64)
            else:
                rows = self.rows_of(faiss.vector_to_array(self.mapped.id_map))
            positions = np.empty(len(self.passages), dtype=np.int64)
            positions[rows[rows >= 0]] = np.flatnonzero(rows >= 0)
            self._layout = positions, rows
        return self._layout

    def search(self, question_vectors: np.ndarray, k: int, within: Scope | None = None) -> list[list[tuple[int, float]]]:
        """For each question vector, the rows and cosine similarities of its k nearest passages, best first;
        with `within`, of that scope's passages (`_search_within`)."""
        k = min(k, len(self.passages) if within is None else len(within.rows))
        if k == 0:
            return [[] for _ in range(len(question_vectors))]
        question_vectors = np.ascontiguousarray(question_vectors, dtype=np.float32)
        if within is not None:
            return self._search_within(question_vectors, k, within)
        if self.mapped is None:
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

    def _search_within(self, question_vectors: np.ndarray, k: int, within: Scope) -> list[list[tuple[int, float]]]:
        """The k nearest passages of the scope `within`.

        A scope of at most EXACT_WITHIN passages, or of less than an eighth of an approximate index, is
        compared one by one (exact: the flat storage searched with a selector of the scope's positions,
        which leaves stale keys out too). HNSW searched with such a selector reaches the nodes near the
        question and keeps the scope's: where the scope holds none near it (a question on criminal law
        asked within the civil code) it finds few and far ones (recall@10 0.68-0.81 for a half to an
        eighth of 90,000 clustered vectors, efSearch widened as the scope is smaller). So a larger share of
        HNSW is searched without the limit for as many more neighbours as the scope is smaller (twice
        k / share), the scope's k nearest being the scope's among the index's nearest; IVF probes as many
        more lists with the selector. A question that finds fewer than k of the scope so is compared one
        by one."""
        share = len(within.rows) / max(len(self.passages), 1)
        if not self.approximate or len(within.rows) <= EXACT_WITHIN or share < 1 / 8:
            return self._exact_within(question_vectors, k, within)
        if isinstance(self.vectors, faiss.IndexIVF):
            probes = min(self.vectors.nlist, math.ceil(2 * self.vectors.nprobe / share))
            found = self._exact_within(question_vectors, k, within, probes)
        else:
            found = [[(row, score) for row, score in hits if within.mask[row]][:k]
                     for hits in self.search(question_vectors, min(len(self.passages), math.ceil(2 * k / share)))]
        short = [i for i, hits in enumerate(found) if len(hits) < k]
        if short:
            for i, hits in zip(short, self._exact_within(question_vectors[short], k, within)):
                found[i] = hits
        return found

    def _exact_within(self, question_vectors: np.ndarray, k: int, within: Scope,
                      probes: int | None = None) -> list[list[tuple[int, float]]]:
        """The k nearest passages of `within`, every one of its vectors compared with each question (those
        in `probes` lists of an IVF index, if given)."""
        count = self.vectors.ntotal
        positions, rows_at = self.positions()
        chosen = np.zeros(count, dtype=bool)
        chosen[positions[within.rows]] = True
        bitmap = np.packbits(chosen, bitorder="little")  # bit i of byte i // 8, lowest first, as FAISS reads it
        selector = faiss.IDSelectorBitmap(count, faiss.swig_ptr(bitmap))
        index = self.vectors
        if isinstance(index, faiss.IndexHNSWFlat):
            index, params = faiss.downcast_index(index.storage), faiss.SearchParameters(sel=selector)
        elif isinstance(index, faiss.IndexIVF):
            params = faiss.SearchParametersIVF(sel=selector, nprobe=probes or index.nlist)
        else:
            params = faiss.SearchParameters(sel=selector)
        scores, found = index.search(question_vectors, k, params=params)
        return [
            [(int(row), float(score)) for row, score in zip(rows_at[places[places >= 0]], row_scores[places >= 0]) if row >= 0]
            for places, row_scores in zip(found, scores)
        ]


def choose_vector_index(passages: int, config: Config = Config()) -> dict:
    """The vector index for `passages` vectors under `config`, as recorded in the manifest's "vector_index".

    `config.vector_index` "auto" is exact search ("flat") below `config.approximate_from` passages and
    HNSW from there on; "flat", "hnsw" and "ivf" force one. Exact search reads every vector for every
    question: the hybrid search over it grows by ~0.13 ms per 1,000 passages, while over HNSW it stays
    a few milliseconds; they cross near 40,000 (scripts/benchmark.py). IVF builds faster than HNSW
    (a k-means and one pass) but searches ~10x slower.
    """
    kind = config.vector_index  # one of qa.config.VECTOR_INDEXES: Config checks its fields
    if kind == "auto":
        kind = "flat" if passages < config.approximate_from else "hnsw"
    if kind == "flat":
        return dict(FLAT)
    if kind == "hnsw":
        return {"type": "hnsw", "factory": f"HNSW{config.hnsw_links},Flat",
                "ef_construction": config.hnsw_ef_construction, "ef_search": config.hnsw_ef_search}
    # About sqrt(n) lists, each trained from at least 39 vectors (FAISS's minimum per centroid);
    # probing a 64th of them, at least 8: recall@10 0.98 on 1M vectors (scripts/benchmark.py).
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


class LocalStore(Store):
    """FAISS (id-mapped by passage key) and passages.jsonl in the build folder (see the module note).

    `max_stale_share`: an HNSW index is made afresh when its stale keys reach this share of it.
    """

    kind = "local"

    def __init__(self, max_stale_share: float = Config.max_stale_share):
        self.max_stale_share = max_stale_share

    @classmethod
    def from_config(cls, config: Config) -> "LocalStore":
        return cls(config.max_stale_share)

    @classmethod
    def from_manifest(cls, facts: dict) -> "LocalStore":
        return cls()

    def write(self, folder: Path, previous: Build | None, manifest: dict, passages: list[Passage], keys: np.ndarray,
              vectors: np.ndarray) -> tuple[list[str], dict]:
        """Write the passages and the id-mapped vector index into `folder`, the previous build's updated
        when it can be (see the module note). Returns the files and the facts of the update for the
        manifest's "store"."""
        with open(folder / PASSAGES, "wb") as file:
            file.writelines(orjson.dumps(passage.to_dict()) + b"\n" for passage in passages)
        settings = manifest.get("vector_index") or dict(FLAT)
        mapped, update = self._updated_vectors(previous, manifest, keys, vectors)
        if mapped is None:
            mapped = faiss.IndexIDMap2(new_vector_index(manifest["dimension"], settings))
            vectors = np.ascontiguousarray(vectors, dtype=np.float32)
            if not mapped.is_trained:
                mapped.train(vectors)
            self._add(mapped, vectors, keys)
            update = {"update": "full", "added": len(keys), "removed": 0, "stale": 0}
        faiss.write_index(mapped, str(folder / VECTORS))
        return [PASSAGES, VECTORS], {"kind": "local", **update}

    def _add(self, mapped: faiss.IndexIDMap2, vectors: np.ndarray, keys: np.ndarray) -> None:
        """Add `vectors` under `keys`; to an approximate index in chunks, saying how far it got through
        `progress` (HNSW takes about a minute for 100,000 vectors on two cores)."""
        exact = isinstance(faiss.downcast_index(mapped.index), faiss.IndexFlat)  # added in a moment: nothing to say
        report = (None if exact else self.progress) or (lambda done, total: None)
        chunk = max(len(keys), 1) if exact else _ADD_CHUNK
        report(0, len(keys))
        for start in range(0, len(keys), chunk):
            mapped.add_with_ids(np.ascontiguousarray(vectors[start : start + chunk], dtype=np.float32), keys[start : start + chunk])
            report(min(start + chunk, len(keys)), len(keys))

    def _updated_vectors(
        self, previous: Build | None, manifest: dict, keys: np.ndarray, vectors: np.ndarray
    ) -> tuple[faiss.IndexIDMap2 | None, dict]:
        """The previous build's vector index with removed passages taken out and new ones added; None
        when it cannot be updated (none, another store, model, dimension or index type, or too stale)."""
        old = previous.manifest if previous is not None else None
        settings = manifest.get("vector_index") or dict(FLAT)
        if (
            old is None or (old.get("store") or {}).get("kind") != "local" or old["model"] != manifest["model"]
            or old["dimension"] != manifest["dimension"] or old.get("vector_index") != settings
        ):
            return None, {}
        try:
            check_files(previous.folder, old, (VECTORS, KEYS))  # a damaged previous build is not built on
            mapped = faiss.read_index(str(previous.folder / VECTORS))
            old_keys = np.load(previous.folder / KEYS, allow_pickle=False)
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
        if stale > self.max_stale_share * max(len(keys), 1):
            return None, {}
        if len(new_rows):
            self._add(mapped, vectors[new_rows], keys[new_rows])
        return mapped, {"update": "incremental", "from": previous.folder.name, "added": int(len(new_rows)),
                        "removed": int(len(removed)), "stale": int(stale)}

    def check(self, folder: Path, manifest: dict) -> None:
        # The passages are counted, not parsed: they were written a moment ago, and parsing a million
        # lines costs a quarter of a one-file update. The vector index is read and checked against the keys.
        self._load(folder, manifest, read_passages=False)

    def open(self, folder: Path, manifest: dict) -> LocalIndex:
        return self._load(folder, manifest)

    def passages(self, folder: Path, manifest: dict) -> list[Passage]:
        """The passages of a build, their file checked against the manifest, without reading its vectors."""
        check_files(folder, manifest, names=(PASSAGES,))
        passages = _read_passages(folder / PASSAGES)
        if len(passages) != manifest["counts"]["passages"]:
            raise IndexCorruptError(f"{folder / PASSAGES} holds {len(passages)} passages, the manifest says "
                                    f"{manifest['counts']['passages']}; {REBUILD_HINT}")
        return passages

    def _load(self, folder: Path, manifest: dict, read_passages: bool = True) -> LocalIndex:
        """The index in a build folder whose files were checked against `manifest`; `read_passages`
        False only counts the lines of the passages file (the index then has no passages)."""
        try:
            # The vectors memory-mapped, not read: pages come in as searches touch them (the HNSW graph,
            # the id map and an IVF's lists are read). A build folder is never changed once written.
            mapped = faiss.read_index(str(folder / VECTORS), faiss.IO_FLAG_MMAP_IFC)
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
        return LocalIndex(folder=folder, manifest=manifest, passages=passages, vectors=vectors, keys=keys, mapped=mapped)


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


def _read_passages(path: Path) -> list[Passage]:
    # orjson: a third of the time of json's for 100,000 lines, time that every start waits for.
    passages = []
    try:
        for line in path.read_bytes().splitlines():
            passages.append(Passage.from_dict(orjson.loads(line)))
    except (ValueError, TypeError):  # orjson.JSONDecodeError (a ValueError) also for text that is not UTF-8
        raise IndexCorruptError(f"{path} line {len(passages) + 1} is damaged; {REBUILD_HINT}") from None
    for number, passage in enumerate(passages):
        if passage.id != number:
            raise IndexCorruptError(f"{path} is out of order at line {number + 1}; {REBUILD_HINT}")
    return passages

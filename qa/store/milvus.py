"""The Milvus store: passages, their vectors and their BM25 full-text index in one Milvus collection.

`uri` is a `.db` path for Milvus Lite (embedded in this process: what the tests use) or
`http://host:19530` for a Milvus server or cluster. One row per passage:

    key      INT64 primary key, the passage's stable key (qa/store/base.py)
    added    the build version that added it
    removed  the build version that removed it (NEVER while it is in the corpus)
    passage  JSON: source, section, offsets, text, page
    text     VARCHAR analysed by Milvus's jieba tokenizer (simplified script), input of
    sparse   the BM25 function's output: Milvus's own full-text search
    dense    FLOAT_VECTOR, inner product over normalised vectors (cosine)

Builds are versions 1, 2, 3…, and a reader of version v sees exactly the rows with
`added <= v and removed > v`. A rebuild to version v+1 inserts the new passages with added v+1 and
marks the removed ones removed v+1; until `current` switches to the build folder that names v+1
(qa/store/folder.py), readers keep asking for version v and see none of it, so a build killed at any
moment leaves version v answering whole. The next build first clears what a killed one left (rows
added after the current version, marks made after it); once `current` has moved, rows removed
before the previous version, which no reader can ask for any more, are deleted.

Questions are answered by the same fusion, relevance decision and citation windows as the local
store (qa/search/retrieval.py): Milvus proposes the candidates by a hybrid search (the dense nearest and
the BM25 best, fused by reciprocal rank), and the retriever scores them and their sections. A question
limited to collections and documents adds a filter on the source in the passage field to both searches
(`passage["source"] like "民法典/%" or passage["source"] == "刑法/刑法.md"`), so Milvus itself returns
only their passages.

Milvus Lite opens a .db file in one process at a time: a second process gets StoreError (stop the
page before building from a shell, or use a Milvus server, which any number of processes share).
"""

import json
import logging
import threading
from pathlib import Path

import numpy as np

from qa.config import Config
from qa.errors import REBUILD_HINT, IndexCorruptError, IndexMismatchError, StoreError
from qa.passages import Passage
from qa.store.base import KEYS, Build, PassageIndex, Scope, Store, read_keys
from qa.text import to_simplified

NEVER = 2**62  # "removed" of a passage still in the corpus
MAX_TEXT_CHARS = 20_000  # of a passage's text searched by BM25 (VARCHAR holds at most 65,535 bytes)
_BATCH = 1_000  # rows per insert, upsert and read
_OWNER = "qa.index"  # the collection property naming the index folder that writes it

_clients: dict[str, object] = {}  # one client per URI and process: Milvus Lite allows one opener per file
_loaded: set[tuple[str, str]] = set()  # (uri, collection) loaded for search by this process's client
_clients_lock = threading.Lock()


def client_for(uri: str):
    """The MilvusClient of `uri`, opened once per process; StoreError if it cannot be opened."""
    with _clients_lock:
        if uri not in _clients:
            try:
                from pymilvus import MilvusClient

                # pymilvus logs every failed call with a traceback; our errors say what failed, once.
                logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
                _clients[uri] = MilvusClient(uri)
            except ImportError:
                raise StoreError("the milvus store needs pymilvus: pip install 'pymilvus[milvus_lite]'") from None
            except Exception as error:  # pymilvus raises its own exception classes for every failure
                if uri.endswith(".db"):
                    raise StoreError(
                        f"cannot open the Milvus Lite database {uri} ({_reason(error)}); only one process can open "
                        "a Milvus Lite file at a time: stop the other one (a running `qa serve`?) or use a Milvus server"
                    ) from None
                raise StoreError(f"cannot reach the Milvus server at {uri} ({_reason(error)})") from None
        return _clients[uri]


def close_client(uri: str) -> None:
    """Close this process's client of `uri` (Milvus Lite then lets another process open the file)."""
    with _clients_lock:
        client = _clients.pop(uri, None)
        _loaded.difference_update({pair for pair in _loaded if pair[0] == uri})
    if client is not None:
        client.close()
    if uri.endswith(".db"):  # Milvus Lite serves the file from a thread of this process until released
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(uri)


def _reason(error: Exception) -> str:
    return getattr(error, "message", None) or str(error) or type(error).__name__


class MilvusStore(Store):
    """Passages and vectors in the Milvus collection `collection` at `uri` (see the module note)."""

    kind = "milvus"

    def __init__(self, uri: str, collection: str):
        self.uri = uri
        self.collection = collection

    @classmethod
    def from_config(cls, config: Config) -> "MilvusStore":
        """`config.milvus_uri`, or Milvus Lite in milvus.db inside the index folder; `config.milvus_collection`."""
        return cls(config.milvus_uri or str(Path(config.index_dir).resolve() / "milvus.db"), config.milvus_collection)

    @classmethod
    def from_manifest(cls, facts: dict) -> "MilvusStore":
        return cls(facts["uri"], facts["collection"])

    @property
    def client(self):
        """This process's client, with the collection loaded for search once it exists (a newly
        opened client finds it released)."""
        client = client_for(self.uri)
        if (self.uri, self.collection) not in _loaded and client.has_collection(self.collection):
            client.load_collection(self.collection)
            _loaded.add((self.uri, self.collection))
        return client

    def write(self, folder, previous, manifest, passages, keys, vectors):
        """Bring the collection from the previous build's version to the next one (rows added and
        marked removed under the new version, invisible until `current` names it)."""
        try:
            return self._write(folder, previous, manifest, passages, keys, vectors)
        except (StoreError, IndexMismatchError):
            raise
        except Exception as error:
            raise StoreError(f"cannot write the passages to Milvus at {self.uri} ({_reason(error)}); "
                             "the previous index is still in use") from None

    def _write(self, folder: Path, previous: Build | None, manifest: dict, passages: list[Passage], keys: np.ndarray, vectors: np.ndarray):
        old = self._previous_facts(previous)
        current = old["version"] if old else 0
        self._ensure_collection(manifest["dimension"], owner=str(folder.parent.parent.resolve()))
        self._clear_after(current)  # what a killed build left: invisible, but in the way
        old_keys = read_keys(previous.folder, previous.manifest) if old else np.zeros(0, np.int64)
        version = current + 1
        removed = np.setdiff1d(old_keys, keys)
        for start in range(0, len(removed), _BATCH):
            self.client.upsert(
                self.collection, [{"key": int(key), "removed": version} for key in removed[start : start + _BATCH]],
                partial_update=True,
            )
        new_rows = np.flatnonzero(~np.isin(keys, old_keys))
        for start in range(0, len(new_rows), _BATCH):
            # upsert, not insert: a key removed in an earlier version and not yet forgotten comes back
            self.client.upsert(self.collection, [self._row(passages[i], keys[i], vectors[i], version) for i in new_rows[start : start + _BATCH]])
        self.client.flush(self.collection)
        facts = {"kind": "milvus", "uri": self.uri, "collection": self.collection, "version": version,
                 "update": "incremental" if old else "full", "added": int(len(new_rows)), "removed": int(len(removed))}
        return [], facts

    def _previous_facts(self, previous: Build | None) -> dict | None:
        """The previous build's store facts if it was this collection's, else None (a first build)."""
        if previous is None:
            return None
        facts = previous.manifest.get("store") or {}
        same = facts.get("kind") == "milvus" and (facts.get("uri"), facts.get("collection")) == (self.uri, self.collection)
        return facts if same and (previous.folder / KEYS).exists() else None

    def _ensure_collection(self, dimension: int, owner: str) -> None:
        """Create the collection if needed, its property "qa.index" naming the index folder `owner`. A
        collection of another index folder is refused: this build would take its rows for a killed build's."""
        from pymilvus import DataType, Function, FunctionType

        client = self.client
        if client.has_collection(self.collection):
            description = client.describe_collection(self.collection)
            held = (description.get("properties") or {}).get(_OWNER)
            if held is None and self._count("key >= 0") == 0:  # created by a build killed before it could say whose
                client.alter_collection_properties(self.collection, {_OWNER: owner})
                held = owner
            if held != owner:
                raise StoreError(
                    f"the Milvus collection {self.collection} at {self.uri} belongs to another index "
                    f"({held or 'not written by qa'}): choose another collection (QA_MILVUS_COLLECTION) or drop that one"
                )
            fields = {f["name"]: f for f in description["fields"]}
            held = (fields.get("dense") or {}).get("params", {}).get("dim")
            if held is not None and int(held) != dimension:
                raise IndexMismatchError(
                    f"the Milvus collection {self.collection} at {self.uri} holds vectors of dimension {held}, "
                    f"the model makes {dimension}: choose another collection (--milvus-collection) or drop that one"
                )
            return
        schema = client.create_schema(auto_id=False, description="policy-qa passages (qa/store/milvus.py)")
        schema.add_field("key", DataType.INT64, is_primary=True)
        schema.add_field("added", DataType.INT64)
        schema.add_field("removed", DataType.INT64)
        schema.add_field("passage", DataType.JSON)
        schema.add_field("text", DataType.VARCHAR, max_length=65_535, enable_analyzer=True, analyzer_params={"tokenizer": "jieba"})
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_field("dense", DataType.FLOAT_VECTOR, dim=dimension)
        schema.add_function(Function(name="bm25", function_type=FunctionType.BM25, input_field_names=["text"], output_field_names=["sparse"]))
        indexes = client.prepare_index_params()
        indexes.add_index("dense", index_type="AUTOINDEX", metric_type="IP")
        # The same k1 and b as our own BM25 (qa/search/keyword.py).
        indexes.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25", params={"bm25_k1": 1.2, "bm25_b": 0.75})
        client.create_collection(self.collection, schema=schema, index_params=indexes, consistency_level="Strong")
        client.alter_collection_properties(self.collection, {_OWNER: owner})

    def _count(self, where: str) -> int:
        return self.client.query(self.collection, filter=where, output_fields=["count(*)"])[0]["count(*)"]

    def _clear_after(self, version: int) -> None:
        """Undo what builds after `version` did (only a killed build leaves anything)."""
        self.client.delete(self.collection, filter=f"added > {version}")
        marked = self.client.query(self.collection, filter=f"removed > {version} and removed < {NEVER}", output_fields=["key"])
        for start in range(0, len(marked), _BATCH):
            self.client.upsert(self.collection, [{"key": row["key"], "removed": NEVER} for row in marked[start : start + _BATCH]],
                               partial_update=True)

    @staticmethod
    def _row(passage: Passage, key: int, vector: np.ndarray, version: int) -> dict:
        fields = {name: value for name, value in passage.to_dict().items() if name != "id"}  # the row is its place
        return {"key": int(key), "added": version, "removed": NEVER, "passage": fields,
                "text": to_simplified(passage.embedding_text())[:MAX_TEXT_CHARS],
                "dense": np.asarray(vector, dtype=np.float32).tolist()}

    def check(self, folder: Path, manifest: dict) -> None:
        """The new version holds exactly the build's passages."""
        version = manifest["store"]["version"]
        found = self._count(_visible(version))
        if found != manifest["counts"]["passages"]:
            raise StoreError(f"Milvus collection {self.collection} holds {found} passages of version {version}, "
                             f"the build wrote {manifest['counts']['passages']}; the previous index is still in use")

    def open(self, folder: Path, manifest: dict) -> "MilvusIndex":
        return MilvusIndex.read(folder, manifest, self)

    def forget_before(self, manifest: dict) -> None:
        # Readers ask for the new version or, for a moment, the one before: rows removed by then are seen by neither.
        try:
            self.client.delete(self.collection, filter=f"removed <= {manifest['store']['version'] - 1}")
        except Exception:
            pass  # only space is lost; the next build tries again


def _visible(version: int) -> str:
    return f"added <= {version} and removed > {version}"


def _within(scope: Scope) -> str:
    """A filter expression for the passages of `scope`, on the source in each row's passage field: a
    collection by the prefix of its sources (`like "民法典/%"`), a document by its source. Milvus's `like`
    cannot escape its wildcards, so a collection whose name holds % or _ is named by its documents."""
    names = [json.dumps(source, ensure_ascii=False) for source in scope.documents]
    prefixes = []
    for collection in scope.collections:
        if "%" in collection or "_" in collection or "\\" in collection:
            names += [json.dumps(source, ensure_ascii=False) for source in scope.sources if source.startswith(collection + "/")]
        else:
            prefixes.append(json.dumps(collection + "/%", ensure_ascii=False))
    terms = [f'passage["source"] like {prefix}' for prefix in prefixes] + [f'passage["source"] == {name}' for name in names]
    return "(" + " or ".join(terms) + ")"


class MilvusIndex(PassageIndex):
    """An index whose passages and vectors are served by Milvus at one version (see the module note).

    Passages and vectors are read into this process, in passage order, as the local store's are;
    `candidates` asks Milvus, so the retriever always scores candidates (approximate).
    """

    def __init__(self, folder: Path, manifest: dict, passages: list[Passage], keys: np.ndarray, store: MilvusStore,
                 matrix: np.ndarray):
        super().__init__(folder, manifest, passages, keys)
        self.store = store
        self.matrix = matrix

    @classmethod
    def read(cls, folder: Path, manifest: dict, store: MilvusStore) -> "MilvusIndex":
        keys = read_keys(folder, manifest)
        version = manifest["store"]["version"]
        try:
            rows = []
            iterator = store.client.query_iterator(store.collection, batch_size=_BATCH, filter=_visible(version),
                                                   output_fields=["key", "passage", "dense"])
            while batch := iterator.next():
                rows.extend(batch)
            iterator.close()
        except StoreError:
            raise
        except Exception as error:
            raise StoreError(f"cannot read the passages from Milvus at {store.uri} ({_reason(error)})") from None
        by_key = {row["key"]: row for row in rows}
        missing = [int(key) for key in keys if int(key) not in by_key]
        if missing or len(rows) != len(keys):
            raise IndexCorruptError(
                f"Milvus collection {store.collection} holds {len(rows)} passages of version {version}, "
                f"the index in {folder} has {len(keys)} ({len(missing)} missing); {REBUILD_HINT}"
            )
        passages = [Passage.from_dict({"id": i, **by_key[int(key)]["passage"]}) for i, key in enumerate(keys)]
        matrix = np.array([by_key[int(key)]["dense"] for key in keys], dtype=np.float32).reshape(len(keys), manifest["dimension"])
        matrix.flags.writeable = False
        return cls(folder, manifest, passages, keys, store, matrix)

    @property
    def approximate(self) -> bool:
        return True  # candidates come from Milvus's search

    def vector_matrix(self) -> np.ndarray:
        return self.matrix

    def search(self, question_vectors: np.ndarray, k: int, within: Scope | None = None) -> list[list[tuple[int, float]]]:
        """For each question vector, the rows and cosine similarities of its k nearest passages by
        Milvus's dense search (inner product over normalised vectors), best first; with `within`, of
        that scope's passages (a filter expression on their source)."""
        return self._ask(question_vectors, k, None, within)

    def candidates(self, question_vectors: np.ndarray, k: int, questions: list[str],
                   within: Scope | None = None) -> list[list[int]]:
        """For each question, the rows of its k nearest passages by Milvus's dense search and its k best
        by Milvus's BM25 over `questions`, fused by reciprocal rank: best first, at most 2k; with
        `within`, of that scope's passages."""
        return [[row for row, _ in hits] for hits in self._ask(question_vectors, k, questions, within)]

    def _ask(self, question_vectors: np.ndarray, k: int, questions: list[str] | None,
             within: Scope | None = None) -> list[list[tuple[int, float]]]:
        """Rows and scores from Milvus: cosines by the dense search alone (no `questions`), else
        reciprocal-rank scores of the hybrid search; only passages of `within` if given."""
        from pymilvus import AnnSearchRequest, RRFRanker

        k = min(k, len(self.passages) if within is None else len(within.rows))
        if k == 0 or not len(question_vectors):
            return [[] for _ in range(len(question_vectors))]
        where = _visible(self.manifest["store"]["version"])
        if within is not None:
            where = f"{where} and {_within(within)}"
        data = [np.asarray(vector, dtype=np.float32).tolist() for vector in question_vectors]
        client, name = self.store.client, self.store.collection
        try:
            if questions is None:
                found = client.search(name, data=data, anns_field="dense", limit=k, filter=where, output_fields=["key"],
                                      search_params={"metric_type": "IP"})
            else:
                requests = [
                    AnnSearchRequest(data=data, anns_field="dense", param={"metric_type": "IP"}, limit=k, expr=where),
                    AnnSearchRequest(data=[to_simplified(q)[:MAX_TEXT_CHARS] for q in questions], anns_field="sparse",
                                     param={"metric_type": "BM25"}, limit=k, expr=where),
                ]
                found = client.hybrid_search(name, requests, RRFRanker(60), limit=2 * k, output_fields=["key"])
        except Exception as error:
            raise StoreError(f"Milvus at {self.store.uri} did not answer the search ({_reason(error)})") from None
        results = []
        for hits in found:
            rows = self.rows_of(np.array([hit["entity"]["key"] if "entity" in hit else hit["key"] for hit in hits], dtype=np.int64))
            results.append([(int(row), float(hit["distance"])) for row, hit in zip(rows, hits)
                            if row >= 0 and (within is None or within.mask[row])])
        return results

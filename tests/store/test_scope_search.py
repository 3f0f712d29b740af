"""The stores' searches limited to a scope (qa/store/base.py `Scope`): FAISS searched with a selector of the
scope's vectors (exact, HNSW and IVF, after incremental updates that leave stale keys and vectors out of
passage order) and Milvus with a filter expression on the passages' source; k passages of the scope come back."""

import faiss
import numpy as np
import pytest

from qa.assistant import Assistant
from qa.config import Config
from qa.passages import Passage
from qa.search.scope import Library
from qa.store import local
from qa.store.factory import store_for
from qa.store.folder import last_build, load_index, make_manifest, write_index
from qa.store.local import choose_vector_index

from ..helpers import make_corpus
from .test_vector_index import clustered_vectors

DIMENSION = 384
FOLDERS = ["法律/民法", "法律/刑法", "法规", "规章/部门_甲", "规章/部门%乙"]  # Milvus's like wildcards in two names


def passages_in_folders(count: int) -> list[Passage]:
    """`count` passages, ten to a document, the documents spread over FOLDERS and one at the top."""
    def source(document: int) -> str:
        return f"{document}.md" if document % 6 == 5 else f"{FOLDERS[document % 6]}/{document}.md"

    return [Passage(id=i, source=source(i // 10), section="", start=0, end=1, text=f"p{i}") for i in range(count)]


def build(folder, passages: list[Passage], vectors: np.ndarray, kind: str, config: Config = Config()):
    settings = choose_vector_index(len(passages), config.with_overrides(vector_index=kind))
    manifest = make_manifest("synthetic", DIMENSION, {}, {"x.md": "0" * 64}, 1, len(passages), vector_index=settings)
    write_index(folder, manifest, passages, vectors, store_for(config), last_build(folder))
    return load_index(folder)


def exact_within(vectors: np.ndarray, questions: np.ndarray, rows: np.ndarray, k: int) -> list[list[int]]:
    similarity = questions @ vectors[rows].T
    return [list(rows[np.argsort(-row, kind="stable")[:k]]) for row in similarity]


SCOPES = [["法律/民法"], ["法律"], ["规章/部门_甲", "5.md"], ["法规", "规章", "法律/刑法/1.md"]]


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_a_scope_gives_k_of_its_nearest_passages_in_every_local_index(tmp_path, kind, monkeypatch):
    vectors, questions = clustered_vectors(3_000, topics=300, seed=5)
    passages = passages_in_folders(3_000)
    index = build(tmp_path, passages, vectors, kind)
    library = Library(passages)
    for exact_from in (local.EXACT_WITHIN, 0):  # 0: a large share of an approximate index searched without the limit
        monkeypatch.setattr(local, "EXACT_WITHIN", exact_from)
        for names in SCOPES:
            scope = library.scope(names)
            found = index.search(questions[:50], 10, within=scope)
            assert all(len(hits) == 10 and all(scope.mask[row] for row, _ in hits) for hits in found)
            expected = exact_within(vectors, questions[:50], scope.rows, 10)
            rows = [[row for row, _ in hits] for hits in found]
            if kind == "flat" or exact_from:  # compared one by one: exact
                assert rows == expected
                np.testing.assert_allclose([s for hits in found for _, s in hits],
                                           [float(vectors[r] @ q) for q, row in zip(questions, rows) for r in row], atol=1e-5)
            else:  # the scope's among more of the index's nearest: recall@10 as without a scope
                recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, expected)])
                assert recall >= 0.9, (names, recall)
    # Candidates are the nearest within the scope too.
    scope = library.scope(["法律/民法"])
    assert index.candidates(questions[:3], 5, ["问"] * 3, scope) == [[r for r, _ in hits] for hits in index.search(questions[:3], 5, scope)]


def test_a_question_far_from_every_passage_of_the_scope_still_gets_k_of_them(tmp_path, monkeypatch):
    """The scope's passages all lie one way and the questions the other: the index's nearest passages hold
    none of the scope, and its k nearest are found by comparing them one by one."""
    monkeypatch.setattr(local, "EXACT_WITHIN", 0)
    vectors, _ = clustered_vectors(3_000, topics=300, seed=2)
    passages = passages_in_folders(3_000)
    scope = Library(passages).scope(["法规"])  # a sixth of the index
    away = np.zeros(DIMENSION, dtype=np.float32)
    away[0] = 1
    vectors[scope.rows] = away + 0.05 * np.random.default_rng(4).standard_normal((len(scope.rows), DIMENSION)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    questions = -vectors[scope.rows[:20]]  # as unlike the scope as can be
    for kind in ("hnsw", "ivf"):
        index = build(tmp_path / kind, passages, vectors, kind)
        assert not any(scope.mask[row] for hits in index.search(questions, 120) for row, _ in hits)
        found = [[row for row, _ in hits] for hits in index.search(questions, 10, within=scope)]
        assert found == exact_within(vectors, questions, scope.rows, 10)


def test_a_scope_skips_stale_keys_and_reads_vectors_out_of_passage_order(tmp_path):
    """After incremental HNSW updates the vectors are stored in the order they were added, with the removed
    passages' still there (stale): a scope is read by the passages' positions, and stale ones are in none."""
    vectors, questions = clustered_vectors(1_200, topics=100, seed=9)
    passages = passages_in_folders(1_200)

    def rows(kept: list[int]):
        return [Passage.from_dict({**passages[r].to_dict(), "id": n}) for n, r in enumerate(kept)], vectors[kept]

    build(tmp_path, *rows(list(range(100, 1_200))), "hnsw")
    kept = list(range(0, 100)) + list(range(150, 1_200))  # 100 added at the end of the storage, 50 removed
    index = build(tmp_path, *rows(kept), "hnsw")
    assert index.manifest["store"]["update"] == "incremental" and len(index.stale) == 50
    library = Library(index.passages)
    for names in (["法律/民法"], ["法规", "5.md"]):
        scope = library.scope(names)
        # Asked with the removed passages' own vectors: never found, and k live passages of the scope instead.
        for hits in index.search(vectors[100:150], 5, within=scope):
            assert len(hits) == 5 and all(scope.mask[row] for row, _ in hits)
        found = [[row for row, _ in hits] for hits in index.search(questions[:20], 5, within=scope)]
        assert found == exact_within(index.vector_matrix(), questions[:20], scope.rows, 5)
        assert index.positions()[1][index.positions()[0][scope.rows]].tolist() == scope.rows.tolist()


DOCS = {
    "医疗/检查.md": "## 互认\n\n二级甲等及以上医疗机构之间检查检验结果互认。\n\n## 转诊\n\n患者转诊时不必重复检查。\n",
    "医疗/医保_报销.md": "## 住院\n\n职工医保住院费用报销比例为百分之八十五。\n\n## 异地\n\n异地就医直接结算。\n",
    "农业/茶叶.md": "## 茶旅\n\n推进茶旅融合发展，建设茶文化公园。\n\n## 补贴\n\n茶农可申请良种补贴。\n",
    "农%业/粮食.md": "## 农田\n\n粮食生产功能区建设标准农田。\n",
    "交通.txt": "城市公交实行刷码乘车，七十岁以上老年人免费乘坐公交车。\n",
}


def test_milvus_filters_by_source_and_answers_as_the_local_store(tmp_path, embedder):
    pytest.importorskip("pymilvus")
    from qa.store.milvus import _within, close_client

    local_config = make_corpus(tmp_path / "local", DOCS)
    config = local_config.with_overrides(index_dir=tmp_path / "milvus", store="milvus", milvus_uri=str(tmp_path / "milvus.db"))
    here, remote = Assistant(local_config, embedder), Assistant(config, embedder)
    here.rebuild()
    remote.rebuild()
    try:
        library = remote._serving()[1].library
        scope = library.scope(["医疗", "农%业", "交通.txt"])
        assert _within(scope) == ('(passage["source"] like "医疗/%" or passage["source"] == "交通.txt" '
                                  'or passage["source"] == "农%业/粮食.md")')
        for names in (["医疗"], ["农业", "交通.txt"], ["农%业"], ["医疗/医保_报销.md"]):
            scope = library.scope(names)
            vector = remote.embedder.embed_questions(["检查结果互认"])
            found = remote.index.candidates(vector, 10, ["检查结果互认"], scope)[0]
            assert sorted(found) == list(scope.rows)  # all of a scope smaller than k, nothing else
            assert [row for row, _ in remote.index.search(vector, 2, scope)[0]] == [
                row for row, _ in here.index.search(vector, 2, here._serving()[1].library.scope(names))[0]]
            assert remote.ask("哪些医院之间检查结果互认？", k=3, within=names).to_json() == \
                here.ask("哪些医院之间检查结果互认？", k=3, within=names).to_json()
    finally:
        close_client(config.milvus_uri)


def test_faiss_bitmap_selector_reads_bits_in_little_order():
    """The selector's bitmap: bit i of byte i // 8, lowest first (numpy's packbits(bitorder="little"))."""
    chosen = np.zeros(20, dtype=bool)
    chosen[[0, 9, 19]] = True
    bitmap = np.packbits(chosen, bitorder="little")
    selector = faiss.IDSelectorBitmap(20, faiss.swig_ptr(bitmap))
    assert [i for i in range(20) if selector.is_member(i)] == [0, 9, 19]

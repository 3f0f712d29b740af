"""The two stores behind one interface: local (FAISS files) and Milvus (Milvus Lite in-process, a real engine).

The same questions get the same answers through both; an incremental rebuild answers as a full
one does in both; a build killed at any moment leaves the previous version answering in both.
Milvus Lite opens a .db file in one process at a time, so the test process closes its client
before a child process builds.
"""

import re
import shutil
from pathlib import Path

import faiss
import numpy as np
import pytest

pytest.importorskip("pymilvus")

from qa.assistant import Assistant
from qa.config import STORES, Config, config_from_env
from qa.embeddings.cache import CACHE_FILE
from qa.errors import ConfigError, IndexCorruptError, StoreError
from qa.evaluation import evaluate_questions, read_squad
from qa.passages import Passage
from qa.store.base import PassageIndex, passage_keys
from qa.store.factory import BACKENDS, store_for, store_of
from qa.store.folder import current_build, last_build, load_index, make_manifest, write_index
from qa.store.local import LocalIndex, LocalStore
from qa.store.milvus import MilvusIndex, MilvusStore, close_client

from ..conftest import DATA, SEED_CORPUS, read_dev_questions
from ..helpers import QA, kill_builds_while_renaming, make_corpus, run_qa
from ..indexing.test_rebuilds import DOCS, kill, read_until, run_child

CMRC_SMALL = DATA / "cmrc2018_trial_small.json"


def milvus(config: Config) -> Config:
    """`config` with its index in Milvus Lite, in a .db file beside the index folder."""
    return config.with_overrides(store="milvus", milvus_uri=str(config.index_dir.parent / "milvus.db"))


def answers(assistant: Assistant, questions: list[str]) -> list[dict]:
    return [answer.to_json() for answer in assistant.ask_many(questions)]


def copy_cache(source: Config, target: Config) -> None:
    """Share the embeddings already made, so the second store's build embeds nothing."""
    target.index_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(source.index_dir / CACHE_FILE, target.index_dir / CACHE_FILE)


@pytest.fixture()
def both(tmp_path, embedder) -> tuple[Assistant, Assistant]:
    """Assistants over DOCS, one per store, both built."""
    local = Assistant(make_corpus(tmp_path / "local", DOCS), embedder)
    local.rebuild()
    config = milvus(make_corpus(tmp_path / "milvus", DOCS))
    copy_cache(local.config, config)
    remote = Assistant(config, embedder)
    remote.rebuild()
    yield local, remote
    close_client(config.milvus_uri)


QUESTIONS = ["哪些医院之间检查结果互认？", "老年人坐公交要钱吗？", "茶产业怎么发展？", "水果品牌", "What is free for old people on buses?"]


def test_the_manifest_names_the_store_and_readers_follow_it(both):
    local, remote = both
    assert load_index(local.config.index_dir).manifest["store"]["kind"] == "local"
    facts = load_index(remote.config.index_dir).manifest["store"]
    assert (facts["kind"], facts["uri"], facts["collection"], facts["version"]) == ("milvus", remote.config.milvus_uri, "qa_passages", 1)
    # A reader needs no store setting: the build folder says where its passages are.
    index = load_index(remote.config.index_dir)
    assert isinstance(index, MilvusIndex) and index.approximate
    assert not (Path(index.folder) / "vectors.faiss").exists()
    assert [p.text for p in index.passages] == [p.text for p in load_index(local.config.index_dir).passages]


def test_both_stores_answer_alike(both):
    local, remote = both
    assert answers(remote, QUESTIONS) == answers(local, QUESTIONS)


def test_milvus_proposes_candidates_by_its_own_bm25_and_dense_search(both):
    _, remote = both
    index = load_index(remote.config.index_dir)
    question = "七十岁以上老年人免费乘坐公交车"
    vectors = remote.embedder.embed_questions([question])
    bus = next(i for i, p in enumerate(index.passages) if "公交" in p.text)
    assert index.search(vectors, 1)[0][0][0] == bus
    # Asked with the opposite vector, the dense search finds another passage; Milvus's BM25 still finds the bus.
    assert index.search(-vectors, 1)[0][0][0] != bus
    proposed = index.candidates(-vectors, 1, [question])[0]
    assert len(proposed) == 2 and bus in proposed


def test_search_gives_cosine_similarities_in_both_stores(both):
    """One verb, one meaning: `search` scores are the inner products of the normalised vectors in every store,
    and `candidates` without keywords of its own are the nearest passages."""
    found = {}
    for assistant in both:
        index = load_index(assistant.config.index_dir)
        assert isinstance(index, PassageIndex)
        vectors = assistant.embedder.embed_questions(QUESTIONS)
        hits = index.search(vectors, 3)
        for vector, question_hits in zip(vectors, hits):
            rows = [row for row, _ in question_hits]
            assert [score for _, score in question_hits] == pytest.approx(index.vector_matrix()[rows] @ vector, abs=1e-5)
        found[type(index)] = [[row for row, _ in question_hits] for question_hits in hits]
    assert found[LocalIndex] == found[MilvusIndex]
    local = load_index(both[0].config.index_dir)
    assert local.candidates(vectors, 3, QUESTIONS) == found[LocalIndex]


def test_status_reads_the_manifest_not_every_passage_from_milvus(both, monkeypatch):
    _, remote = both

    def refused(*args):
        raise AssertionError("qa status read every passage from Milvus")

    monkeypatch.setattr(MilvusStore, "open", refused)
    result = run_qa("status", "--corpus", str(remote.config.corpus_dir), "--index", str(remote.config.index_dir))
    assert result.exit_code == 0
    assert f"Store: Milvus at {remote.config.milvus_uri}, collection qa_passages, version 1\n" in result.output


def test_the_store_names_are_the_settings_names(tmp_path):
    assert set(BACKENDS) == set(STORES)
    assert isinstance(store_for(Config(index_dir=tmp_path)), LocalStore)
    milvus_store = store_for(Config(index_dir=tmp_path, store="milvus"))
    assert (milvus_store.uri, milvus_store.collection) == (str(tmp_path.resolve() / "milvus.db"), "qa_passages")
    facts = {"kind": "milvus", "uri": "http://milvus.example:19530", "collection": "policy_v1"}
    assert (store_of({"store": facts}).uri, store_of({"store": facts}).collection) == ("http://milvus.example:19530", "policy_v1")
    with pytest.raises(IndexCorruptError, match=r"^the manifest names no store the index can be read from \(\{'kind': 'faiss'\}\); "):
        store_of({"store": {"kind": "faiss"}})


EDITS = {
    "农业.md": DOCS["农业.md"].replace("推进茶旅融合发展。", "在山区乡镇试点无人机配送快递。"),
    "新.md": "# 基金\n\n新设立乡村振兴青年创业基金。每个项目最高资助十万元。\n",
}


def edit(corpus: Path) -> None:
    for name, text in EDITS.items():
        (corpus / name).write_text(text, encoding="utf-8")
    (corpus / "交通.txt").unlink()


@pytest.mark.parametrize("store", ["local", "milvus"])
def test_an_incremental_update_answers_as_a_full_rebuild(tmp_path, embedder, store):
    config = make_corpus(tmp_path / "updated", DOCS)
    config = milvus(config) if store == "milvus" else config
    updated = Assistant(config, embedder)
    updated.rebuild()
    edit(config.corpus_dir)
    report = updated.rebuild()
    facts = load_index(config.index_dir).manifest["store"]
    # One passage changed, one added, one removed: two added and two removed, the rest kept in place.
    assert (facts["update"], facts["added"], facts["removed"]) == ("incremental", 2, 2)
    assert report.passages == 4

    fresh_config = make_corpus(tmp_path / "fresh", {**{n: t for n, t in DOCS.items() if n != "交通.txt"}, **EDITS})
    fresh_config = fresh_config.with_overrides(store=store, milvus_uri=str(tmp_path / "fresh.db") if store == "milvus" else None)
    copy_cache(config, fresh_config)
    fresh = Assistant(fresh_config, embedder)
    fresh.rebuild()
    assert load_index(fresh_config.index_dir).manifest["store"]["update"] == "full"
    questions = [*QUESTIONS, "无人机配送在哪里试点？", "青年创业基金资助多少？"]
    assert answers(updated, questions) == answers(fresh, questions)
    updated_index, fresh_index = load_index(config.index_dir), load_index(fresh_config.index_dir)
    assert updated_index.passages == fresh_index.passages
    assert np.array_equal(updated_index.vector_matrix(), fresh_index.vector_matrix())
    if store == "milvus":
        close_client(config.milvus_uri)
        close_client(fresh_config.milvus_uri)


def test_milvus_forgets_removed_passages_once_no_reader_can_ask_for_them(tmp_path, embedder):
    config = milvus(make_corpus(tmp_path, DOCS))
    assistant = Assistant(config, embedder)
    assistant.rebuild()
    edit(config.corpus_dir)
    assistant.rebuild()  # version 2: the two passages removed are kept for readers of version 1
    client = MilvusStore(config.milvus_uri, config.milvus_collection).client

    def count(where: str) -> int:
        return client.query(config.milvus_collection, filter=where, output_fields=["count(*)"])[0]["count(*)"]

    assert (count("key >= 0"), count("removed == 2")) == (6, 2)
    (config.corpus_dir / "水.md").write_text("# 水\n\n治水兴水。\n", encoding="utf-8")
    assistant.rebuild()  # version 3: no reader asks for version 1 any more
    assert (count("key >= 0"), count("removed == 2"), count("added <= 3 and removed > 3")) == (5, 0, 5)
    close_client(config.milvus_uri)


def test_passage_keys_are_stable_and_change_with_anything_about_the_passage():
    passage = Passage(id=0, source="a.md", section="s", start=0, end=4, text="互认共享")
    vector = np.ones((1, 4), np.float32) / 2
    key = passage_keys([passage], vector)[0]
    assert key >= 0 and passage_keys([Passage.from_dict({**passage.to_dict(), "id": 7})], vector)[0] == key  # not its row
    for changed in ({"start": 1}, {"text": "互认"}, {"section": "t"}, {"source": "b.md"}):
        assert passage_keys([Passage.from_dict({**passage.to_dict(), **changed})], vector)[0] != key
    assert passage_keys([passage], vector * 0.5)[0] != key  # embedded again, otherwise
    with pytest.raises(ValueError, match="two passages have the same key"):
        passage_keys([passage, passage], np.vstack([vector, vector]))


def test_hnsw_updates_in_place_and_never_finds_a_removed_passage(tmp_path):
    """HNSW cannot remove a vector: a removed passage's key stays as a stale key that searches skip."""
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(600, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    passages = [Passage(id=i, source=f"{i // 10}.md", section="", start=0, end=1, text=f"p{i}") for i in range(600)]
    settings = {"type": "hnsw", "factory": "HNSW32,Flat", "ef_construction": 40, "ef_search": 128}

    def write(rows, config=Config()):
        chosen = [Passage.from_dict({**passages[r].to_dict(), "id": n}) for n, r in enumerate(rows)]
        manifest = make_manifest("synthetic", 16, {}, {"x.md": "0" * 64}, 1, len(rows), vector_index=settings)
        write_index(tmp_path, manifest, chosen, vectors[rows], store_for(config), last_build(tmp_path))
        return load_index(tmp_path)

    write(list(range(580)))
    rows = [r for r in range(600) if not 100 <= r < 120]  # 20 removed, 20 added
    index = write(rows)
    assert index.manifest["store"] | {"from": None} == {
        "kind": "local", "update": "incremental", "from": None, "added": 20, "removed": 20, "stale": 20}
    assert isinstance(index.vectors, faiss.IndexHNSWFlat) and index.vectors.ntotal == 600 and len(index.stale) == 20
    assert np.array_equal(index.vector_matrix(), vectors[rows])
    # Asked with the removed passages' own vectors: five live passages each, the stale vector skipped by FAISS.
    assert [len(hits) for hits in index.search(vectors[100:120], 5)] == [5] * 20
    assert [hits[0][0] for hits in index.search(vectors[rows[:50]], 1)] == list(range(50))
    # Stale keys past a tenth of the index (Config.max_stale_share): made afresh.
    assert write(list(range(200, 600)), Config(max_stale_share=0.5)).manifest["store"]["update"] == "incremental"
    index = write(list(range(200, 600)))
    assert index.manifest["store"]["update"] == "full" and len(index.stale) == 0


def test_bad_store_settings_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"^QA_STORE must be one of local, milvus, not 'faiss'$"):
        config_from_env({"QA_STORE": "faiss"})
    message = "QA_MILVUS_URI must be a Milvus Lite file ending in .db or a server address like http://host:19530, not 'milvus:19530'"
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        config_from_env({"QA_MILVUS_URI": "milvus:19530"})
    config = config_from_env({"QA_STORE": "milvus", "QA_MILVUS_URI": "http://milvus.example:19530", "QA_MILVUS_COLLECTION": "policy_v1"})
    assert (config.store, config.milvus_uri, config.milvus_collection) == ("milvus", "http://milvus.example:19530", "policy_v1")


# ---------------------------------------------------------------------------------------------
# Quality through each store: the seed's development questions and a CMRC trial slice


@pytest.mark.slow  # ~1 min: the seed embedded once, indexed in both stores
def test_seed_questions_get_the_same_answers_through_both_stores(tmp_path, embedder):
    local = Assistant(Config(corpus_dir=SEED_CORPUS, index_dir=tmp_path / "local"), embedder)
    local.rebuild()
    config = milvus(Config(corpus_dir=SEED_CORPUS, index_dir=tmp_path / "milvus"))
    copy_cache(local.config, config)
    remote = Assistant(config, embedder)
    remote.rebuild()
    questions = [row["question"] for row in read_dev_questions()]
    assert answers(remote, questions) == answers(local, questions)
    close_client(config.milvus_uri)


@pytest.mark.slow  # ~1-2 min: 32 CMRC paragraphs embedded once, indexed in both stores
def test_cmrc_slice_answer_at_1_within_half_a_point(tmp_path, embedder):
    documents, questions = read_squad(CMRC_SMALL)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for source, text in documents.items():
        (corpus / source).write_text(text, encoding="utf-8")
    # Candidate scoring from 100 passages, so that both stores answer from candidates, as at scale.
    local_config = Config(corpus_dir=corpus, index_dir=tmp_path / "local", approximate_from=100)
    local = Assistant(local_config, embedder)
    local.rebuild()
    config = milvus(local_config.with_overrides(index_dir=tmp_path / "milvus"))
    copy_cache(local_config, config)
    remote = Assistant(config, embedder)
    remote.rebuild()
    asked = [q for q in questions if q.question]
    by_local = evaluate_questions(asked, lambda texts: local.ask_many(texts, 5))
    by_milvus = evaluate_questions(asked, lambda texts: remote.ask_many(texts, 5))
    assert by_local.metrics["passage@1"] >= 0.8  # the slice is answerable: a store that found nothing would fail
    assert abs(by_milvus.metrics["passage@1"] - by_local.metrics["passage@1"]) <= 0.005
    close_client(config.milvus_uri)


# ---------------------------------------------------------------------------------------------
# Atomic: a build killed at any moment leaves the previous version answering, in Milvus too


MILVUS_WRITE_AND_STOP = """
    import sys, time
    from pathlib import Path
    from qa.store.factory import store_of
    from qa.store.folder import build_lock, last_build, load_index, write_index

    index_dir = Path(sys.argv[1])
    old = load_index(index_dir)

    def stop_here(path):
        path.write_bytes(b"half")
        print("STOPPED", flush=True)
        time.sleep(600)

    with build_lock(index_dir):
        write_index(index_dir, old.manifest, old.passages[:2], old.vector_matrix()[:2], store_of(old.manifest),
                    last_build(index_dir), extra_files={"extra.bin": stop_here})
"""


def test_milvus_build_killed_after_writing_its_rows_leaves_the_old_version(tmp_path, embedder):
    config = milvus(make_corpus(tmp_path, DOCS))
    assistant = Assistant(config, embedder)
    assistant.rebuild()
    before = answers(assistant, QUESTIONS)
    old_folder = current_build(config.index_dir)
    close_client(config.milvus_uri)

    # The child marks two passages removed in version 2 of the collection, then stops before `current` moves.
    child = run_child(MILVUS_WRITE_AND_STOP, str(config.index_dir))
    read_until(child, "STOPPED")
    kill(child)

    assert current_build(config.index_dir) == old_folder
    assert answers(Assistant(config, embedder), QUESTIONS) == before
    edit(config.corpus_dir)
    assistant = Assistant(config, embedder)
    report = assistant.rebuild()  # clears the killed build's rows first
    facts = load_index(config.index_dir).manifest["store"]
    assert (facts["version"], facts["added"], facts["removed"], report.passages) == (2, 2, 2, 4)
    assert answers(assistant, ["无人机配送在哪里试点？"])[0]["passages"][0]["source"] == "农业.md"
    close_client(config.milvus_uri)


@pytest.mark.slow  # ~20 s: ten `qa build` processes
def test_kill_milvus_builds_at_many_moments_never_breaks_the_index(tmp_path, embedder):
    config = milvus(make_corpus(tmp_path, DOCS))
    Assistant(config, embedder).rebuild()
    close_client(config.milvus_uri)
    args = [str(QA), "build", "--corpus", str(config.corpus_dir), "--index", str(config.index_dir), "--store", "milvus",
            "--milvus-uri", config.milvus_uri]
    kill_builds_while_renaming(config, args, [0.1, 0.4, 0.7, 1.0, 1.3, 1.6, 2.0, 2.5, 3.0, 4.0],
                               after_each=lambda: close_client(config.milvus_uri))
    assert Assistant(config, embedder).rebuild().documents == 3
    close_client(config.milvus_uri)


def test_a_collection_of_another_index_folder_is_refused(tmp_path, embedder):
    first = milvus(make_corpus(tmp_path / "first", DOCS)).with_overrides(milvus_uri=str(tmp_path / "shared.db"))
    Assistant(first, embedder).rebuild()
    second = make_corpus(tmp_path / "second", DOCS).with_overrides(store="milvus", milvus_uri=first.milvus_uri)
    with pytest.raises(StoreError, match=r"^the Milvus collection qa_passages at .*shared.db belongs to another index "
                       r"\(.*first/index\): choose another collection \(QA_MILVUS_COLLECTION\) or drop that one$"):
        Assistant(second, embedder).rebuild()
    assert len(load_index(first.index_dir).passages) == 4  # the first index is untouched
    close_client(first.milvus_uri)


HOLD_THE_FILE = """
    import sys, time
    from qa.store.milvus import client_for

    client_for(sys.argv[1])
    print("HOLDING", flush=True)
    time.sleep(600)
"""


def test_a_milvus_lite_file_open_in_another_process_is_named(tmp_path, embedder):
    config = milvus(make_corpus(tmp_path, DOCS))
    Assistant(config, embedder).rebuild()
    close_client(config.milvus_uri)
    holder = run_child(HOLD_THE_FILE, config.milvus_uri)
    try:
        read_until(holder, "HOLDING")
        with pytest.raises(StoreError) as refused:
            load_index(config.index_dir)
        assert str(refused.value).startswith(f"cannot open the Milvus Lite database {config.milvus_uri} (")
        assert str(refused.value).endswith(
            "only one process can open a Milvus Lite file at a time: stop the other one (a running `qa serve`?) or use a Milvus server"
        )
    finally:
        kill(holder)
    assert len(load_index(config.index_dir).passages) == 4  # the lock goes with the process
    close_client(config.milvus_uri)

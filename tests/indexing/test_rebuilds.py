"""Rebuilds: incremental (only new passages embedded), atomic under kill -9, locked, observable, watched.

Real corpora in temporary folders, the real model, real processes killed with SIGKILL.
"""

import hashlib
import os
import select
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import qa.indexing.background
from qa.assistant import Assistant
from qa.config import Config
from qa.decision.background import Background, background_questions
from qa.documents.corpus import read_corpus, read_document
from qa.embeddings.cache import CACHE_FILE, EmbeddingCache, text_key
from qa.embeddings.model import Embedder
from qa.embeddings.second_encoder import SecondEncoder
from qa.errors import BuildLockedError
from qa.indexing.changes import corpus_changes
from qa.indexing.pipeline import build_index
from qa.indexing.watch import watch_corpus
from qa.passages import make_passages
from qa.search.keyword import KeywordIndex, load_keywords
from qa.store.folder import current_build, load_index

from ..documents.test_readers import POLICY_PAGE_1, POLICY_PAGE_2, make_docx, make_pdf
from ..embeddings.test_cache import FORMAT_1
from ..helpers import PROJECT, QA, kill_builds_while_renaming, make_corpus, start_interruptible

DOCS = {
    "医保.md": "# 医保\n\n## 检查互认\n\n二级甲等及以上医疗机构之间检查检验结果互认。患者不必重复检查。\n",
    "农业.md": "# 农业\n\n## 水果\n\n推动水果产业规模化发展，打响区域公用品牌。\n\n## 茶叶\n\n推进茶旅融合发展。\n",
    "交通.txt": "城市公交实行刷码乘车，七十岁以上老年人免费乘坐公交车。\n",
}
DRONE_QUESTION = "无人机配送在哪里试点？"


@pytest.fixture()
def built(tmp_path, embedder) -> Assistant:
    """An assistant over DOCS with its index built (and the embedding cache filled)."""
    assistant = Assistant(make_corpus(tmp_path, DOCS), embedder)
    report = assistant.rebuild()
    assert (report.embedded, report.reused) == (report.passages, 0)
    return assistant


def top(assistant: Assistant, question: str):
    return assistant.ask(question).passages[0]


def run_child(script: str, *args: str) -> subprocess.Popen:
    """A Python process running `script`, its output (stdout and stderr) readable line by line."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        cwd=PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )


def read_until(process: subprocess.Popen, marker: str, limit: float = 300) -> str:
    """Output of `process` up to and including `marker` (fails if the process ends or `limit` s pass first)."""
    seen = b""
    deadline = time.monotonic() + limit
    while marker.encode() not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {marker!r} within {limit} s; output so far:\n{seen.decode(errors='replace')}"
        ready, _, _ = select.select([process.stdout], [], [], remaining)
        if ready:
            chunk = os.read(process.stdout.fileno(), 65536)
            assert chunk, f"process ended before {marker!r}; output:\n{seen.decode(errors='replace')}"
            seen += chunk
    return seen.decode(errors="replace")


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    process.stdout.close()


# ---------------------------------------------------------------------------------------------
# Incremental


def test_edit_reembeds_only_the_changed_passages_and_changes_the_answer(built):
    config = built.config
    assert "无人机" not in top(built, DRONE_QUESTION).text
    path = config.corpus_dir / "农业.md"
    path.write_text(DOCS["农业.md"].replace("推进茶旅融合发展。", "在山区乡镇试点无人机配送快递。"), encoding="utf-8")

    report = built.rebuild()

    # 4 passages: 医保.md 1, 交通.txt 1, 农业.md 2 (水果, 茶叶); only the 茶叶 passage's text is new.
    total = len(make_passages([read_document(path, config.corpus_dir)], config.max_passage_chars))
    assert total == 2
    assert (report.embedded, report.reused, report.passages) == (1, 3, 4)
    changes = report.changes
    assert (changes.added, changes.changed, changes.removed, changes.unchanged) == (
        [], ["农业.md"], [], ["交通.txt", "医保.md"],
    )
    answer = top(built, DRONE_QUESTION)
    assert (answer.source, answer.section, answer.text) == ("农业.md", "茶叶", "在山区乡镇试点无人机配送快递。")


def keyword_counts(keywords: KeywordIndex) -> list[dict[str, float]]:
    """Each row's counts by term: what a keyword index holds, whatever the order of its vocabulary."""
    counts = keywords.counts.tocsr()
    return [
        {keywords.vocabulary[term]: float(count) for term, count in zip(counts.indices[a:b], counts.data[a:b])}
        for a, b in zip(counts.indptr[:-1], counts.indptr[1:])
    ]


def test_keyword_index_of_a_rebuild_equals_a_fresh_one(built, monkeypatch):
    import qa.indexing.embedding

    tokenized = []
    real = qa.indexing.embedding.tokenize
    monkeypatch.setattr(qa.indexing.embedding, "tokenize", lambda text, tokenizer: tokenized.append(text) or real(text, tokenizer))
    path = built.config.corpus_dir / "农业.md"
    path.write_text(DOCS["农业.md"].replace("推进茶旅融合发展。", "在山区乡镇试点无人机配送快递。"), encoding="utf-8")
    built.rebuild()  # tokenizes only the new passage; the others' counts come from the previous build
    index = built.index
    assert tokenized == [next(p for p in index.passages if "无人机" in p.text).keyword_text()]
    saved = load_keywords(index)
    fresh = KeywordIndex.build([p.keyword_text() for p in index.passages], built.config.keyword_tokenizer)
    assert sorted(saved.vocabulary) == sorted(fresh.vocabulary)  # 茶旅 (only in the edited passage) is gone
    assert "茶旅" not in saved.vocabulary and "无人" in saved.vocabulary
    assert keyword_counts(saved) == keyword_counts(fresh)
    question = saved.concepts("无人机配送在哪里试点？")
    assert np.array_equal(saved.concept_scores([question]), fresh.concept_scores([fresh.concepts("无人机配送在哪里试点？")]))


def test_a_rebuild_tokenizes_everything_when_the_tokens_are_made_otherwise(built, monkeypatch):
    import qa.indexing.embedding

    tokenized = []
    real = qa.indexing.embedding.tokenize
    monkeypatch.setattr(qa.indexing.embedding, "tokenize", lambda text, tokenizer: tokenized.append(text) or real(text, tokenizer))
    monkeypatch.setattr("qa.indexing.pipeline.tokenizer_name", lambda tokenizer: f"{tokenizer}|another jieba")
    (built.config.corpus_dir / "new.txt").write_text("新设立乡村振兴青年创业基金。", encoding="utf-8")
    built.rebuild()
    assert len(tokenized) == 5
    assert built.index.manifest["keyword_tokens"].endswith("|another jieba")


def test_rebuild_without_changes_does_not_load_the_model(built):
    fresh = Embedder(built.config.model)
    report = build_index(built.config, fresh)
    assert "model" not in fresh.__dict__  # the cached_property was never computed
    assert (report.embedded, report.reused, report.passages) == (0, 4, 4)
    assert not report.changes.any


def test_a_rebuild_of_the_same_passages_reuses_the_relevance_background(built, monkeypatch):
    before = Background.read(current_build(built.config.index_dir))
    assert before.fingerprint

    def measured_again(*args, **kwargs):
        raise AssertionError("the background was measured again for unchanged passages")

    monkeypatch.setattr("qa.indexing.background.measure_background", measured_again)
    build_index(built.config, Embedder(built.config.model))
    assert Background.read(current_build(built.config.index_dir)) == before
    # A changed passage measures it again.
    monkeypatch.undo()
    (built.config.corpus_dir / "交通.txt").write_text("公交线路延伸到乡村。\n", encoding="utf-8")
    build_index(built.config, built.embedder)
    assert Background.read(current_build(built.config.index_dir)).fingerprint != before.fingerprint


def test_the_background_is_reused_until_enough_passages_changed(built, monkeypatch):
    """Up to DRIFT of the passages may change, counted from build to build, before the background is
    measured again (here DRIFT is a half: 2 of the 4 passages)."""
    monkeypatch.setattr("qa.indexing.background.DRIFT", 0.5)
    measured = []
    real = qa.indexing.background.measure_background
    monkeypatch.setattr("qa.indexing.background.measure_background", lambda *args: measured.append(1) or real(*args))
    first = Background.read(current_build(built.config.index_dir))
    corpus = built.config.corpus_dir

    (corpus / "交通.txt").write_text("公交线路延伸到乡村。\n", encoding="utf-8")  # one passage edited
    assert build_index(built.config, built.embedder).passages == 4
    assert (measured, load_index(built.config.index_dir).manifest["background"]) == ([], {"passages_changed": 1})
    assert Background.read(current_build(built.config.index_dir)) == first
    (corpus / "新.txt").write_text("新设立乡村振兴青年创业基金。\n", encoding="utf-8")  # one added: 2 of 5
    build_index(built.config, built.embedder)
    assert (measured, load_index(built.config.index_dir).manifest["background"]) == ([], {"passages_changed": 2})
    (corpus / "新.txt").write_text("乡村振兴青年创业基金每个项目最高资助十万元。\n", encoding="utf-8")  # 3 > 2.5
    build_index(built.config, built.embedder)
    assert (measured, load_index(built.config.index_dir).manifest["background"]) == ([1], {"passages_changed": 0})
    assert Background.read(current_build(built.config.index_dir)).fingerprint != first.fingerprint


def test_a_rebuild_reads_only_the_files_that_changed(built, embedder, tmp_path, monkeypatch):
    """Unchanged files keep the previous build's passages unread, renumbered in corpus order, and the index
    equals a full build's; a different reader (code, parsers, settings) reads every file again."""
    import qa.indexing.pipeline

    read = []

    def reading(corpus_dir, paths=None, **named):
        read.extend(path.name for path in paths)
        return read_corpus(corpus_dir, paths, **named)

    monkeypatch.setattr(qa.indexing.pipeline, "read_corpus", reading)
    (built.config.corpus_dir / "交通.txt").write_text("公交线路延伸到乡村。\n在山区乡镇试点无人机配送快递。\n", encoding="utf-8")
    report = built.rebuild()
    assert read == ["交通.txt"] and report.changes.changed == ["交通.txt"]

    fresh = Assistant(Config(corpus_dir=built.config.corpus_dir, index_dir=tmp_path / "fresh"), embedder)
    fresh.rebuild()
    assert built.index.passages == fresh.index.passages  # ids included: 农业.md's two sections follow 交通.txt
    assert len({p.source for p in built.index.passages}) == 3 and top(built, DRONE_QUESTION).source == "交通.txt"

    read.clear()
    other = replace(built.config, max_file_bytes=built.config.max_file_bytes - 1)  # a setting of the reader
    build_index(other, embedder)
    assert sorted(read) == sorted(DOCS)
    read.clear()
    build_index(other, embedder)
    assert read == []


def test_a_build_reads_the_previous_manifest_once(built, monkeypatch):
    import qa.store.folder

    reads, read = [], qa.store.folder.read_manifest
    monkeypatch.setattr(qa.store.folder, "read_manifest", lambda folder: reads.append(folder) or read(folder))
    previous = current_build(built.config.index_dir)
    (built.config.corpus_dir / "交通.txt").write_text("公交线路延伸到乡村。\n", encoding="utf-8")
    report = build_index(built.config, built.embedder)  # reuses passages, the store's vectors and the background's inputs
    assert (report.changes.changed, report.reused) == (["交通.txt"], 3)
    assert reads == [previous]


def test_renamed_and_removed_files_need_no_embedding(built, embedder):
    corpus = built.config.corpus_dir
    (corpus / "医保.md").rename(corpus / "医疗保障.md")
    (corpus / "交通.txt").unlink()
    fresh = Embedder(built.config.model)

    report = build_index(built.config, fresh)

    assert "model" not in fresh.__dict__
    assert (report.embedded, report.reused, report.passages, report.documents) == (0, 3, 3, 2)
    changes = report.changes
    assert (changes.added, changes.removed, changes.unchanged) == (["医疗保障.md"], ["交通.txt", "医保.md"], ["农业.md"])
    assistant = Assistant(built.config, embedder)
    assert top(assistant, "哪些医院之间检查结果互认？").source == "医疗保障.md"
    sources = {passage.source for passage in assistant.index.passages}
    assert sources == {"医疗保障.md", "农业.md"}


SMALL_REBUILD = """
    import sys
    from qa.cli import main

    main(["build", "--corpus", sys.argv[1], "--index", sys.argv[2]], standalone_mode=False)
    print("loaded:", sorted({"torch", "sentence_transformers", "transformers"} & set(sys.modules)))
"""


def test_a_small_rebuild_loads_neither_torch_nor_sentence_transformers(built):
    config = built.config
    path = config.corpus_dir / "农业.md"
    path.write_text(DOCS["农业.md"].replace("推进茶旅融合发展。", "在山区乡镇试点无人机配送快递。"), encoding="utf-8")
    child = run_child(SMALL_REBUILD, str(config.corpus_dir), str(config.index_dir))
    output = child.communicate(timeout=300)[0].decode()  # a deadline for a hung build, not a wait
    assert child.returncode == 0, output
    assert "1 changed, 0 removed, 2 unchanged files; 1 passage embedded, 3 reused." in output
    assert output.strip().endswith("loaded: []")
    assert top(Assistant(config, built.embedder), DRONE_QUESTION).text == "在山区乡镇试点无人机配送快递。"


def cached_names(config: Config, text: str) -> list[str]:
    """The names the embedding cache holds a vector of `text` under, but the second encoder's (it files
    its own vectors of the passages English background questions find, qa/indexing/embedding.py)."""
    with sqlite3.connect(config.index_dir / CACHE_FILE) as connection:
        rows = connection.execute(
            "SELECT names.name FROM vectors JOIN names ON names.id = vectors.name WHERE key = ?", (text_key(text),)
        ).fetchall()
    return sorted(name for (name,) in rows if name != SecondEncoder.name)


def test_vectors_of_a_small_rebuild_are_filed_under_what_made_them(tmp_path, embedder):
    """Passages embedded in bfloat16 by the model, then one edited passage embedded in float32 by ONNX
    Runtime: each vector is cached and counted under its own name; a build that loads the model
    again makes the float32 one again in bfloat16, so a large build leaves one kind of vector."""
    config = make_corpus(tmp_path, DOCS)
    model = Embedder(precision="bfloat16")
    model.model = embedder.model  # sentence-transformers loaded: every passage goes through it
    bfloat16, float32 = model.cache_name, model.model_name
    assert bfloat16 == f"{float32} (bfloat16 passages)"
    assert build_index(config, model).vectors_by == {bfloat16: 4}

    path = config.corpus_dir / "农业.md"
    path.write_text(DOCS["农业.md"].replace("推进茶旅融合发展。", "在山区乡镇试点无人机配送快递。"), encoding="utf-8")
    small = Embedder(precision="bfloat16")
    report = build_index(config, small)
    assert "model" not in small.__dict__  # embedded by ONNX Runtime, in float32
    assert (report.embedded, report.vectors_by) == (1, {bfloat16: 3, float32: 1})
    index = load_index(config.index_dir)
    assert index.manifest["passage_vectors"] == {bfloat16: 3, float32: 1}
    edited = next(p for p in index.passages if "无人机" in p.text)
    assert cached_names(config, edited.embedding_text()) == [float32]  # never filed as bfloat16
    onnx_vector = small.encoder.encode(["passage: " + edited.embedding_text()])[0]
    # Row `id` of the matrix in passage order: an updated vector index stores new vectors at its end.
    assert np.array_equal(index.vector_matrix()[edited.id], onnx_vector)

    again = Embedder(precision="bfloat16")  # a small rebuild reuses the float32 vector it made
    report = build_index(config, again)
    assert (report.embedded, report.reused, report.vectors_by) == (0, 4, {bfloat16: 3, float32: 1})
    assert "model" not in again.__dict__

    (config.corpus_dir / "new.txt").write_text("新设立乡村振兴青年创业基金。", encoding="utf-8")
    report = build_index(config, model)  # the model is loaded: it embeds the float32 passage again too
    assert (report.embedded, report.vectors_by) == (2, {bfloat16: 5})
    assert cached_names(config, edited.embedding_text()) == [float32, bfloat16]
    assert load_index(config.index_dir).manifest["passage_vectors"] == {bfloat16: 5}


def test_float32_passages_have_one_name_whoever_embeds_them(tmp_path, embedder):
    config = make_corpus(tmp_path, DOCS)
    small = Embedder(precision="float32")
    assert build_index(config, small).vectors_by == {small.model_name: 4}
    assert "model" not in small.__dict__
    vectors = load_index(config.index_dir).vectors.reconstruct_n(0, 4)
    model = Embedder(precision="float32")
    model.model = embedder.model
    texts = [p.embedding_text() for p in load_index(config.index_dir).passages]
    cosines = np.sum(vectors * model.embed_passages(texts), axis=1)  # sentence-transformers' float32
    assert cosines.min() >= 0.99999


def test_progress_stages_in_order(built, tmp_path):
    """Every stage of a build says how far it got, done of total: here a new file of one passage."""
    calls = []
    (built.config.corpus_dir / "new.txt").write_text("新设立乡村振兴青年创业基金。", encoding="utf-8")
    built.rebuild(progress=lambda stage, done, total: calls.append((stage, done, total)))
    questions = background_questions().values()
    background = sum(map(len, questions))
    searched = np.cumsum([min(32, len(group) - start) for group in questions for start in range(0, len(group), 32)])
    assert calls == [
        ("reading", 1, 1),  # only the new file: the three others are unchanged
        ("passages", 4, 5),
        ("model", 0, 1), ("model", 1, 1),
        ("embedding", 0, 1), ("embedding", 1, 1),
        ("keywords", 0, 1), ("keywords", 1, 1),  # only the new passage: the others' counts are the previous build's
        ("second", 0, 1), ("second", 1, 1),
        ("background", 0, background),  # the passages changed: measured again, 32 questions at a time
        *[("background", int(done), background) for done in searched],
        # The passages and vectors (an exact index: added at once), keywords, background, second encoder,
        # the checksums, the check; then `current` moves.
        ("writing", 0, 6), ("writing", 1, 6), ("writing", 2, 6), ("writing", 3, 6), ("writing", 4, 6),
        ("writing", 5, 6), ("writing", 6, 6),
    ]
    calls.clear()
    built.rebuild(progress=lambda stage, done, total: calls.append((stage, done, total)))
    assert [call for call in calls if call[0] != "reading"] == [
        ("passages", 5, 5), ("embedding", 0, 0), ("keywords", 0, 0), ("second", 0, 0), ("background", 0, 0),
        *[("writing", done, 6) for done in range(7)],
    ]


def test_an_approximate_index_reports_the_vectors_it_adds(built, monkeypatch):
    import qa.store.local

    monkeypatch.setattr(qa.store.local, "_ADD_CHUNK", 2)
    calls = []
    config = replace(built.config, vector_index="hnsw")
    build_index(config, built.embedder, lambda stage, done, total: calls.append((stage, done, total)))
    assert [call for call in calls if call[0] == "vectors"] == [("vectors", 0, 4), ("vectors", 2, 4), ("vectors", 4, 4)]
    first = calls.index(("writing", 0, 6))
    assert calls[first + 1 : first + 5] == [("vectors", 0, 4), ("vectors", 2, 4), ("vectors", 4, 4), ("writing", 1, 6)]


def test_a_cache_of_format_1_is_converted_and_its_vectors_reused(built):
    """The cache an earlier version wrote (format 1) is converted when a build opens it, with progress
    and a note; its vectors are those the build uses, so nothing is embedded again."""
    config = built.config
    path = config.index_dir / CACHE_FILE
    before = built.ask("哪些医院之间检查结果互认？").to_json()
    texts = [p.embedding_text() for p in built.index.passages]
    with EmbeddingCache(path, built.embedder.cache_name, float16=[SecondEncoder.name]) as cache:
        names = [*built.index.manifest["passage_vectors"], SecondEncoder.name]  # float32 or bfloat16 passages
        rows = {name: cache.get(texts, model=name) for name in names}
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    connection = sqlite3.connect(path)
    connection.executescript(FORMAT_1)
    connection.executemany("INSERT INTO vectors VALUES (?, ?, 1, ?)", [
        (name, hashlib.sha256(text.encode()).digest(), vector.astype(np.float32).tobytes())
        for name, vectors in rows.items() for text, vector in zip(texts, vectors) if vector is not None
    ])
    connection.commit()
    connection.close()

    calls, fresh = [], Embedder(config.model)
    report = build_index(config, fresh, lambda stage, done, total: calls.append((stage, done, total)))
    assert (report.embedded, report.reused) == (0, 4) and "model" not in fresh.__dict__
    assert [call for call in calls if call[0] == "cache"] == [("cache", 0, 8), ("cache", 8, 8)]
    assert [note.split(":")[0] for note in report.notes] == [f"embedding cache {path} converted to a compact format"]
    assert Assistant(config, built.embedder).ask("哪些医院之间检查结果互认？").to_json() == before
    assert build_index(config, fresh).notes == []  # converted once


def test_damaged_embedding_cache_is_started_afresh(built):
    cache = built.config.index_dir / CACHE_FILE
    for suffix in ("-wal", "-shm"):
        Path(f"{cache}{suffix}").unlink(missing_ok=True)
    cache.write_bytes(b"not a database" * 100)
    report = built.rebuild()
    assert report.notes == [f"embedding cache {cache} was damaged (file is not a database); it was started afresh"]
    assert (report.embedded, report.reused) == (4, 0)
    assert built.rebuild().notes == []


# ---------------------------------------------------------------------------------------------
# Formats and unreadable files


def test_mixed_formats_are_indexed_and_bad_files_named(tmp_path, embedder):
    config = make_corpus(tmp_path, {"医保.md": DOCS["医保.md"]})
    corpus = config.corpus_dir
    (corpus / "创业.pdf").write_bytes(make_pdf([POLICY_PAGE_1, POLICY_PAGE_2]))
    (corpus / "办法.docx").write_bytes(
        make_docx("垃圾分类办法", [("heading", "第一章 总则"), ("paragraph", "居民应当将厨余垃圾投放到绿色垃圾桶。")])
    )
    (corpus / "公告.html").write_text("<h1>公告</h1><p>图书馆周一闭馆，其余时间开放到晚上九点。</p>", encoding="utf-8")
    (corpus / "国标.txt").write_bytes("社区食堂为独居老人提供助餐服务。".encode("gbk"))
    (corpus / "空白.txt").write_bytes(b"")
    (corpus / "损坏.pdf").write_bytes(b"%PDF-1.7\n%%EOF")
    (corpus / "加密.pdf").write_bytes(make_pdf([["机密。"]], encrypt_with="secret", owner_password="owner"))
    assistant = Assistant(config, embedder)

    report = assistant.rebuild()

    assert report.documents == 5
    assert [(p.source, p.reason.split(" (")[0].split(":")[0]) for p in report.problems] == [
        ("加密.pdf", "encrypted PDF"), ("损坏.pdf", "damaged PDF, cannot be parsed"), ("空白.txt", "empty file"),
    ]
    assert report.kept == []
    assert report.notes == ["国标.txt: read as GB18030 (not UTF-8)"]
    expected = {
        "返乡创业补贴每人最高多少钱？": ("创业.pdf", ""),
        "厨余垃圾投放到什么颜色的垃圾桶？": ("办法.docx", "第一章 总则"),
        "图书馆哪天闭馆？": ("公告.html", "公告"),
        "独居老人在哪里吃饭？": ("国标.txt", ""),
    }
    for question, (source, section) in expected.items():
        answer = top(assistant, question)
        assert (answer.source, answer.section) == (source, section), question
    changes = corpus_changes(config)
    assert not changes.any
    assert [p.source for p in changes.unreadable] == ["加密.pdf", "损坏.pdf", "空白.txt"]


def test_a_file_that_becomes_unreadable_keeps_its_indexed_version(built):
    config = built.config
    question = "哪些医院之间检查结果互认？"
    before = top(built, question)
    path = config.corpus_dir / "医保.md"
    path.write_bytes("Le café est à côté.".encode("latin-1"))  # saved in the wrong encoding

    report = built.rebuild()

    reason = "bad encoding: neither UTF-8 nor GB18030 Chinese text (undecodable byte at offset 6); save it as UTF-8"
    assert [(p.source, p.reason) for p in report.problems] == [("医保.md", reason)]
    assert report.kept == ["医保.md"]
    assert (report.documents, report.passages, report.embedded) == (3, 4, 0)
    assert top(built, question) == before  # still answered, with the text indexed before
    changes = corpus_changes(config)
    assert not changes.any and [(p.source, p.reason) for p in changes.unreadable] == [("医保.md", reason)]

    from click.testing import CliRunner

    from qa.cli import main

    status = CliRunner().invoke(main, ["status", "--corpus", str(config.corpus_dir), "--index", str(config.index_dir)])
    assert status.exit_code == 0
    assert status.output.endswith(
        f"Corpus: {config.corpus_dir} unchanged since the build.\n"
        f"  unreadable 医保.md (its version indexed before is kept): {reason}\n"
    )

    # Kept again by the next build; replaced as soon as the file can be read.
    assert built.rebuild().kept == ["医保.md"]
    path.write_text("# 医保\n\n## 检查互认\n\n三级医院之间影像检查结果互认。\n", encoding="utf-8")
    report = built.rebuild()
    assert (report.kept, report.problems, report.changes.changed) == ([], [], ["医保.md"])
    assert top(built, question).text == "三级医院之间影像检查结果互认。"


# ---------------------------------------------------------------------------------------------
# Atomic: kill -9 at any moment leaves the previous index loadable and answering


BUILD_AND_STOP = """
    import sys, time
    from pathlib import Path
    from qa.indexing.pipeline import build_index
    from qa.config import Config
    from qa.embeddings.model import Embedder

    corpus, index, stop_at, at_least = sys.argv[1:]

    def progress(stage, done, total):
        print(stage, done, total, flush=True)
        if stage == stop_at and done >= int(at_least):
            print("STOPPED", flush=True)
            time.sleep(600)  # hold the build here until the test kills it

    # Batches of one passage, so that "after the first batch" is in the middle of embedding.
    build_index(Config(corpus_dir=Path(corpus), index_dir=Path(index)), Embedder(batch_size=1), progress)
"""


@pytest.mark.slow  # 15-20 s each: a child process loads the model
@pytest.mark.parametrize(
    "stage, done, embedded_after",
    # Killed before its chunk was saved, the embedding is redone; killed later, the cache has it.
    [("embedding", 1, 3), ("writing", 0, 0)],
    ids=["after-the-first-embedded-batch", "before-writing-the-index"],
)
def test_build_killed_midway_leaves_the_old_index_answering(built, embedder, stage, done, embedded_after):
    config = built.config
    question = "七十岁以上老人坐公交要钱吗？"
    before = built.ask(question).to_json()
    old_folder = current_build(config.index_dir)
    (config.corpus_dir / "交通.txt").unlink()
    (config.corpus_dir / "new.md").write_text(
        "# 基金\n\n新设立乡村振兴青年创业基金。每个项目最高资助十万元。\n\n# 申请\n\n申请人须在本省注册企业。\n\n"
        "# 期限\n\n资助期限为三年。\n",
        encoding="utf-8",
    )

    child = run_child(BUILD_AND_STOP, str(config.corpus_dir), str(config.index_dir), stage, str(done))
    read_until(child, "STOPPED")
    kill(child)

    assert current_build(config.index_dir) == old_folder
    assert Assistant(config, embedder).ask(question).to_json() == before
    # The next build completes and removes what the killed one left behind.
    report = built.rebuild()
    assert sorted(report.changes.added + report.changes.removed) == ["new.md", "交通.txt"]
    assert (report.embedded, report.reused) == (embedded_after, 6 - embedded_after)
    assert sorted(p.name for p in (config.index_dir / "builds").iterdir()) == sorted(
        [old_folder.name, Path(report.folder).name]
    )
    assert top(built, "青年创业基金每个项目资助多少？").source == "new.md"


WRITE_AND_STOP = """
    import sys, time
    from pathlib import Path
    from qa.store.folder import build_lock, last_build, load_index, write_index
    from qa.store.local import LocalStore

    index_dir = Path(sys.argv[1])
    old = load_index(index_dir)
    vectors = old.vectors.reconstruct_n(0, old.vectors.ntotal)

    def stop_here(path):
        path.write_bytes(b"half")
        print("STOPPED", flush=True)
        time.sleep(600)

    with build_lock(index_dir):
        write_index(index_dir, old.manifest, old.passages[:2], vectors[:2], LocalStore(), last_build(index_dir),
                    extra_files={"extra.bin": stop_here})
"""


def test_build_killed_while_writing_index_files_leaves_the_old_index(built, embedder):
    config = built.config
    old_folder = current_build(config.index_dir)
    child = run_child(WRITE_AND_STOP, str(config.index_dir))
    read_until(child, "STOPPED")
    partial = [p for p in (config.index_dir / "builds").iterdir() if p != old_folder]
    assert len(partial) == 1 and (partial[0] / "extra.bin").read_bytes() == b"half"
    kill(child)

    index = load_index(config.index_dir, model=config.model)
    assert (index.folder, len(index.passages)) == (old_folder, 4)
    assert top(Assistant(config, embedder), "哪些医院之间检查结果互认？").source == "医保.md"


@pytest.mark.slow  # ~10 s: ten `qa build` processes
def test_kill_at_many_moments_never_breaks_the_index(built):
    """Kill `qa build` at spread-out moments of a rebuild; each time the index is the old or the new one, whole."""
    config = built.config
    args = [str(QA), "build", "--corpus", str(config.corpus_dir), "--index", str(config.index_dir)]
    kill_builds_while_renaming(config, args, [0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 1.0, 1.3, 1.7, 2.2])
    assert built.rebuild().documents == 3


def test_second_build_at_once_is_refused_with_a_clear_message(built):
    config = built.config
    holder = run_child(
        """
        import sys, time
        from pathlib import Path
        from qa.store.folder import build_lock
        with build_lock(Path(sys.argv[1])):
            print("LOCKED", flush=True)
            time.sleep(600)
        """,
        str(config.index_dir),
    )
    try:
        read_until(holder, "LOCKED")
        with pytest.raises(BuildLockedError) as error:
            built.rebuild()
        message = str(error.value)
        assert message.startswith(f"another build of {config.index_dir} is running (pid {holder.pid} since ")
        assert message.endswith("); wait for it to finish")
    finally:
        kill(holder)
    assert built.rebuild().passages == 4  # the lock goes with the process, even killed


# ---------------------------------------------------------------------------------------------
# qa build --watch


@pytest.mark.slow  # 1 s alone, ~13 s in a full run: `qa` starting up under load
def test_watch_rebuilds_when_the_corpus_changes(built):
    config = built.config
    # Started so that Ctrl-C stops it even when pytest itself was started with SIGINT ignored (as a background
    # job of a script is): with a plain Popen the watcher ignored the SIGINT below and this test timed out.
    watcher = start_interruptible(
        [str(QA), "build", "--watch", "--interval", "0.2", "--corpus", str(config.corpus_dir), "--index", str(config.index_dir)],
        env=dict(os.environ, HF_HUB_OFFLINE="1"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        first = read_until(watcher, "Watching")
        assert "Indexed 3 documents as 4 passages in " in first
        assert "0 added, 0 changed, 0 removed, 3 unchanged files; 0 passages embedded, 4 reused." in first
        (config.corpus_dir / "交通.txt").unlink()
        second = read_until(watcher, "Watching")
        assert "0 added, 0 changed, 1 removed, 2 unchanged files; 0 passages embedded, 3 reused." in second
        watcher.send_signal(signal.SIGINT)
        rest = watcher.communicate(timeout=300)[0].decode()  # a deadline for a hung watcher, not a wait
        assert watcher.returncode == 0
        assert rest.strip().endswith("Stopped watching.")
    finally:
        if watcher.poll() is None:
            kill(watcher)
    assert load_index(config.index_dir).manifest["counts"]["documents"] == 2


def test_the_watcher_acts_at_once_then_after_each_change_once_the_folder_settles(tmp_path):
    """The one corpus watcher of `qa build --watch` and the page's auto-rebuild (qa/indexing/watch.py)."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    seen = []

    class Enough(Exception):
        pass

    def act():
        seen.append(sorted(path.name for path in corpus.iterdir()))
        if len(seen) == 1:  # a change made while acting (an edit during a rebuild) makes it act again
            (corpus / "a.md").write_text("一", encoding="utf-8")
        else:
            raise Enough

    with pytest.raises(Enough):
        watch_corpus(corpus, act, interval=0.05)
    assert seen == [[], ["a.md"]]


def test_an_index_whose_keywords_read_other_text_asks_for_a_rebuild():
    from qa.embeddings.second_encoder import SECOND_FILE
    from qa.indexing.changes import KEYWORD_TEXT, settings_changes

    config = Config()
    manifest = {"model": config.model, "chunking": config.chunking(), "files": {SECOND_FILE: {}}, "keyword_text": KEYWORD_TEXT}
    assert settings_changes(config, manifest) == []
    del manifest["keyword_text"]  # built before the keyword index read document names
    assert [line.split(":")[0] for line in settings_changes(config, manifest)] == ["keywords"]

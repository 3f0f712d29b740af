"""A build that cannot read its corpus or write its index gives a named error that says how to fix it,
or recovers, and nothing already indexed is lost: an empty or missing corpus folder, a file without read
permission (the build runs as an unprivileged user), and a disk that fills up during a rebuild (a real
6 MB tmpfs where this machine allows mounting one, and always a writer that fails with ENOSPC).
A build killed with SIGKILL at many moments is tested in tests/indexing/test_rebuilds.py; bad entries and
files too large in tests/documents/test_corpus.py; a damaged index in tests/store/test_folder.py.
"""

import errno
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
from qa.config import Config
from qa.errors import IndexWriteError
from qa.page.background_rebuild import RebuildJob
from qa.page.index_status import IndexStatus
from qa.page.render import render_status
from qa.search.keyword import KeywordIndex
from qa.store.folder import current_build

from ..conftest import THREE_DOCS as DOCS
from ..conftest import THREE_DOCS_ANSWER as ANSWER
from ..conftest import sources, top_text
from ..helpers import make_corpus, run_qa, small_tmpfs

# --- empty and missing corpus ---------------------------------------------------------------------


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


# --- a file without read permission ---------------------------------------------------------------


# `qa` as an unprivileged user: root reads every file whatever its mode, so a root test process drops
# to nobody, after importing what the build needs (the interpreter lives under /root, out of nobody's reach).
AS_NOBODY = """
    import os, sys
    import click, email.feedparser, email.parser, encodings.cp437, importlib.metadata, json, sqlite3, tqdm
    import qa.assistant, qa.indexing.pipeline, qa.cli, qa.embeddings.cache, qa.store.folder, qa.search.keyword
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


# --- a disk that fills up during a rebuild --------------------------------------------------------


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

    def save_until_the_disk_is_full(self, path, groups=None):
        real_save(self, path, groups)
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

    def disk_full(self, path, groups=None):
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

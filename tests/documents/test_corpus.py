"""The corpus folder as the build reads it (qa/documents/corpus.py): entries that are not readable documents
(a FIFO, a folder named like a document, dangling and looping links, a link to a device, links that lead
outside the corpus) never hang or leak a build; a file over the size limit (200 MB, sparse so the test
stays fast; the limit set with QA_MAX_FILE_MB) is reported and not read, its indexed version kept.
"""

import os

from qa.indexing.changes import corpus_changes

from ..conftest import sources, top_text
from ..helpers import run_qa

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

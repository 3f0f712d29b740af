"""The feedback log survives a full disk and a crash: a vote is written whole or not at all, a damaged
line is skipped and reported by the reader, and a record's size is bounded (issue 14).

The full disk is real where the tests may mount one (a 64 KiB tmpfs, as root), and a writer that fails
half-way through stands in for it everywhere.
"""

import errno
import json
import os
import uuid
from pathlib import Path

import pytest

from qa import feedback
from qa.answer import Answer, CitedPassage
from qa.errors import FeedbackError
from qa.feedback import MAX_TEXT_CHARS, read_feedback, read_feedback_log, record_feedback

from .helpers import small_tmpfs

QUESTION = "哪些级别的医院之间检查结果互认？"
PASSAGE = CitedPassage(rank=1, score=0.81, source="医保.md", section="9 医学检查检验结果互认", text="二级甲等及以上医疗机构之间检查检验结果互认。",
                       start=12, end=34)
ANSWER = Answer(QUESTION, "answered", 0.81, [PASSAGE])


def vote(path: Path, rating: str = "up", question: str = QUESTION) -> dict:
    return record_feedback(path, rating, question, question, ANSWER)


def test_a_vote_is_one_json_line_with_the_cited_passages(tmp_path):
    log = tmp_path / "logs" / "feedback.jsonl"
    first, second = vote(log), vote(log, "down")
    assert log.read_bytes().count(b"\n") == 2
    assert read_feedback_log(log).votes == [first, second] and read_feedback_log(log).damaged == []
    assert second["passages"] == [ANSWER.to_json()["passages"][0]] and second["rating"] == "down"


def test_question_and_searched_text_are_cut_with_a_marker(tmp_path):
    log = tmp_path / "feedback.jsonl"
    long = "民" * 1_000_000  # a 1M-character question sent past the chat box's limit
    record = record_feedback(log, "up", long, "topic " + long, ANSWER)
    assert record["question"] == "民" * MAX_TEXT_CHARS + "…[cut: 1,000,000 characters in all]"
    assert record["searched"] == "topic " + "民" * (MAX_TEXT_CHARS - 6) + "…[cut: 1,000,006 characters in all]"
    # 2 × 2,000 Chinese characters (3 bytes each) and the rest: well under the 6 MB the full text took.
    assert log.stat().st_size < 14_000
    assert read_feedback(log) == [record]


def test_a_write_that_fails_half_way_leaves_the_log_as_it_was(tmp_path, monkeypatch):
    log = tmp_path / "feedback.jsonl"
    vote(log)
    before = log.read_bytes()
    real_write = os.write

    def disk_full(fd, data):  # as a full disk does: part of the line goes in, then the rest is refused
        real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(feedback.os, "write", disk_full)
    with pytest.raises(FeedbackError, match=r"^cannot write the feedback log .*feedback.jsonl: No space left on device$"):
        vote(log, "down")
    assert log.read_bytes() == before

    monkeypatch.setattr(feedback.os, "write", lambda fd, data: real_write(fd, data[:10]))  # a short write
    with pytest.raises(FeedbackError, match=r"No space left on device$"):
        vote(log, "down")
    assert log.read_bytes() == before

    monkeypatch.setattr(feedback.os, "write", real_write)
    vote(log, "cleared")
    assert [v["rating"] for v in read_feedback(log)] == ["up", "cleared"]


def test_a_partial_line_left_by_a_crash_is_skipped_and_reported_and_never_swallows_the_next_vote(tmp_path, caplog):
    log = tmp_path / "feedback.jsonl"
    whole = vote(log)
    line = (json.dumps(whole, ensure_ascii=False)).encode("utf-8")
    cut_in_a_character = line[: line.index("医".encode()) + 1]  # the first byte of a 3-byte character
    with open(log, "ab") as file:
        file.write(line[:40] + b"\n" + cut_in_a_character)  # a line cut short, then one cut mid-character
    after = vote(log, "down")
    feedback_log = read_feedback_log(log)
    assert feedback_log.votes == [whole, after]
    assert feedback_log.damaged == [(2, "not a JSON record (cut short?)"), (3, "not UTF-8 text")]
    assert read_feedback(log) == [whole, after]
    assert [record.getMessage() for record in caplog.records] == [
        f"{log} line 2 skipped: not a JSON record (cut short?)",
        f"{log} line 3 skipped: not UTF-8 text",
    ]


def test_a_log_that_is_not_there_has_no_votes(tmp_path):
    assert read_feedback(tmp_path / "none.jsonl") == [] and read_feedback_log(tmp_path / "none.jsonl").damaged == []


@pytest.fixture()
def full_disk(tmp_path):
    """A real 64 KiB tmpfs mounted at tmp_path/disk (needs root and mount; skipped otherwise)."""
    with small_tmpfs(tmp_path / "disk", "64k") as disk:
        if disk is None:
            pytest.skip(small_tmpfs.why)
        yield disk


def test_votes_on_a_real_full_disk_leave_the_log_readable_and_the_next_vote_intact(full_disk):
    log = full_disk / "feedback.jsonl"
    filler = full_disk / "filler"
    filler.write_bytes(b"x" * 40_000)
    recorded, refused = [], 0
    for number in range(40):  # each vote ~6.3 KB (2 × 2,000 Chinese characters): the disk fills after a few
        try:
            recorded.append(vote(log, question=f"{number} " + "民" * 3000))
        except FeedbackError as error:
            assert str(error) == f"cannot write the feedback log {log}: No space left on device"
            refused += 1
    assert recorded and refused > 0
    assert read_feedback_log(log).votes == recorded and read_feedback_log(log).damaged == []
    assert log.read_bytes().endswith(b"\n")

    filler.unlink()  # space again: the next vote goes in whole, after the last good one
    after = vote(log, "down", question=uuid.uuid4().hex)
    assert read_feedback_log(log).votes == recorded + [after] and read_feedback_log(log).damaged == []

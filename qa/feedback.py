"""Thumbs up / down from the chat page, appended to a local JSON Lines log to collect retrieval failures.

One line per vote:

    {"time": "2025-01-01T12:00:00+00:00", "rating": "down", "question": "具体是怎么做的？",
     "searched": "怎样吸引年轻人回乡创业？ 具体是怎么做的？", "answered": true,
     "passages": [{"rank": 1, "score": 0.81, "source": "...", "section": "...", "text": "...", "start": 0, "end": 97}]}

`rating` is "up", "down", or "cleared" when a vote is taken back. `question` is what the person typed,
`searched` what was actually retrieved (a follow-up combined with the previous question), `passages`
what was cited, as in `qa ask --json`.

A record is bounded: `question` and `searched` keep their first MAX_TEXT_CHARS characters (with a
marker saying how long they were); the passages are bounded by what an answer may cite. A record is
written whole or not at all: one write of the whole line, undone if it fails (a full disk), and
started on a fresh line if an older crash left a partial one. `read_feedback_log` skips a damaged
line (not UTF-8, not JSON) and reports it, rather than failing on it.
"""

import errno
import fcntl
import json
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from qa.answer import Answer
from qa.errors import FeedbackError

RATINGS = ("up", "down", "cleared")  # "cleared": the person took back an earlier vote
MAX_TEXT_CHARS = 2000  # of `question` and `searched` in a record: twice the chat box's 1,000

log = logging.getLogger(__name__)


def record_feedback(path: Path, rating: str, question: str, searched: str, answer: Answer) -> dict:
    """Append one vote to the log at `path` (created with its folder if missing); returns the record.

    Raises FeedbackError for an unknown rating or a log that cannot be written; the log is then as it was.
    """
    if rating not in RATINGS:
        raise FeedbackError(f"unknown rating {rating!r}: use one of {', '.join(RATINGS)}")
    answer_json = answer.to_json()
    record = {
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "rating": rating,
        "question": capped(question),
        "searched": capped(searched),
        "answered": answer_json["answered"],
        "passages": answer_json["passages"],
    }
    line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        append_whole(path, line)
    except OSError as error:
        raise FeedbackError(f"cannot write the feedback log {path}: {error.strerror or error}") from None
    return record


def capped(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """`text`, or its first `limit` characters and a marker saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…[cut: {len(text):,} characters in all]"


def append_whole(path: Path, line: bytes) -> None:
    """Append `line` (ending in a newline) to the file at `path` whole, or leave the file as it was.

    One write on a file opened for appending, under an exclusive lock (several page processes may
    share one log), flushed to the disk; if any of it fails (a full disk writes part of a line,
    then refuses the rest), the file is cut back to its size before. When the file does not end
    with a newline (a crash of an older version mid-line), the record starts on a line of its own,
    so that the partial line does not swallow it. Raises OSError.
    """
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        try:
            written = os.write(fd, line)
            if written != len(line):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            os.fsync(fd)  # a disk that fills at write-back says so here, not after the vote is reported recorded
        except OSError:
            os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)  # releases the lock


@dataclass
class FeedbackLog:
    """The votes of a feedback log, and the lines that could not be read (line number, reason)."""

    votes: list[dict] = field(default_factory=list)
    damaged: list[tuple[int, str]] = field(default_factory=list)


def read_feedback_log(path: Path) -> FeedbackLog:
    """The votes in the log at `path`, oldest first, and its damaged lines (not UTF-8 or not a JSON
    object), which are skipped; an empty FeedbackLog if there is no log yet."""
    result = FeedbackLog()
    if not path.exists():
        return result
    with open(path, "rb") as lines:
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                vote = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                result.damaged.append((number, "not UTF-8 text"))
                continue
            except ValueError:
                result.damaged.append((number, "not a JSON record (cut short?)"))
                continue
            if isinstance(vote, dict):
                result.votes.append(vote)
            else:
                result.damaged.append((number, "not a JSON record (cut short?)"))
    return result


def read_feedback(path: Path) -> list[dict]:
    """All votes in the log at `path`, oldest first (an empty list if there is no log yet).

    Damaged lines are skipped, each with a warning in the log naming its line number.
    """
    feedback = read_feedback_log(path)
    for number, reason in feedback.damaged:
        log.warning("%s line %d skipped: %s", path, number, reason)
    return feedback.votes

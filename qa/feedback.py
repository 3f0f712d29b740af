"""Thumbs up / down from the chat page, appended to a local JSON Lines log to collect retrieval failures.

One line per vote:

    {"time": "2025-01-01T12:00:00+00:00", "rating": "down", "question": "具体是怎么做的？",
     "searched": "怎样吸引年轻人回乡创业？ 具体是怎么做的？", "answered": true,
     "passages": [{"rank": 1, "score": 0.81, "source": "...", "section": "...", "text": "...", "start": 0, "end": 97}]}

`rating` is "up", "down", or "cleared" when a vote is taken back. `question` is what the person typed, `searched` what was actually retrieved (a follow-up combined
with the previous question), `passages` what was cited, as in `qa ask --json`.
"""

import fcntl
import json
from datetime import datetime, timezone
from pathlib import Path

from .answer import Answer
from .errors import FeedbackError

RATINGS = ("up", "down", "cleared")  # "cleared": the person took back an earlier vote


def record_feedback(path: Path, rating: str, question: str, searched: str, answer: Answer) -> dict:
    """Append one vote to the log at `path` (created with its folder if missing); returns the record.

    Raises FeedbackError for an unknown rating or a log that cannot be written.
    """
    if rating not in RATINGS:
        raise FeedbackError(f"unknown rating {rating!r}: use one of {', '.join(RATINGS)}")
    answer_json = answer.to_json()
    record = {
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "rating": rating,
        "question": question,
        "searched": searched,
        "answered": answer_json["answered"],
        "passages": answer_json["passages"],
    }
    line = json.dumps(record, ensure_ascii=False) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as log:
            # Several page processes may share one log: the lock keeps each line whole.
            fcntl.flock(log, fcntl.LOCK_EX)
            try:
                log.write(line)
                log.flush()
            finally:
                fcntl.flock(log, fcntl.LOCK_UN)
    except OSError as error:
        raise FeedbackError(f"cannot write the feedback log {path}: {error.strerror or error}") from None
    return record


def read_feedback(path: Path) -> list[dict]:
    """All votes in the log at `path`, oldest first (an empty list if there is no log yet)."""
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as log:
        return [json.loads(line) for line in log if line.strip()]

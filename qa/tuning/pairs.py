"""Read labelled questions for `qa tune`: which passages of the index answer which question.

Three inputs, each read whole, every line that cannot be used listed with its line number and reason:

- a STARD-format .jsonl (like ../shared/eval/statutes/stard_train.jsonl): one JSON object a line,
  {"id", "question", "articles": [{"name", "text"}, …]}. An article's positive passage is the first passage of the
  index that holds one of its windows (qa/evaluation.py `article_windows`: its first five 20-character windows,
  whitespace removed), tried in order, so the passage where the article starts when the index has it; the rule
  `qa eval` scores by. The question's id is its "id", so its fold is the one `qa eval --fold` gives it.
- a TSV, one pair a line: the question, a tab, and a passage id: its source and character span as `qa ask --json`
  prints them, `SOURCE:START-END` (e.g. `民法典/民法典.md:10234-10320`). Lines of the same question gather its
  passages; blank lines and lines starting with "#" are skipped. The question's id is its text.
- the feedback log of the chat page (qa/feedback.py). Votes are taken oldest first, by the text that was searched
  (`searched`, else `question`); a question's last vote counts, "cleared" taking it back:
      up     the first cited passage (the lowest rank) is a positive: the one the answer stood on;
      down   the first DOWN_NEGATIVES cited passages (the cards the page shows first) are negatives: the person said
             none of them answers. A question whose last vote is down has no positive, so it makes no pair of its own
             (a note says so); its negatives go to the same question in a labelled file, if one has it.
  A cited passage is found in the index by source and span, else by its text (whitespace removed) inside a
  passage. The question's id is the searched text.

A line that is not what its format says, a passage text or id found nowhere in the index, and an empty file are
problems: `check_labels` lists them all and `qa tune` and `qa calibrate` stop, unless told to leave those lines out
(then it lists them and they go on).
"""

import bisect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from qa.errors import TuneError
from qa.evaluation import EvalQuestion, article_windows, read_stard_line
from qa.feedback import read_feedback_log
from qa.passages import Passage

MAX_LISTED = 30  # problems listed in the error; the rest counted
DOWN_NEGATIVES = 5  # a thumbs-down marks the first five cited passages: the page's five cards
_WHITESPACE = re.compile(r"\s+")
_SPAN = re.compile(r"^(?P<source>.+):(?P<start>\d+)-(?P<end>\d+)$")


@dataclass(frozen=True)
class Problem:
    """A line of an input that cannot be used: the file, its line number (0: the file as a whole) and why."""

    path: Path
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.line == 0 else f"{self.path} line {self.line}: {self.reason}"


@dataclass
class LabelledQuestion:
    """A question and the rows (in the index's passages) that answer it and that do not.

    `articles`: the relevant texts, whitespace removed, that a passage must hold a window of to count as retrieved:
    a STARD question's articles, else its positive passages' texts. `where`: the file and line it was read from."""

    id: str
    question: str
    positives: list[int] = field(default_factory=list)
    negatives: list[int] = field(default_factory=list)
    articles: list[str] = field(default_factory=list)
    where: str = ""

    def eval_question(self) -> EvalQuestion:
        """The question as `qa eval` scores a STARD question: by its relevant texts."""
        return EvalQuestion(self.id, self.question, articles=tuple(self.articles))


@dataclass
class Labels:
    """What the inputs gave: the usable questions (in reading order), the problems, and notes on lines used only in part."""

    questions: list[LabelledQuestion] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def pairs(self) -> int:
        return sum(len(q.positives) for q in self.questions)


class PassageFinder:
    """Finds passages of an index by a text they hold (whitespace aside) or by source and span."""

    def __init__(self, passages: list[Passage]):
        self.passages = passages
        texts = [_WHITESPACE.sub("", p.text) for p in passages]
        self._joined = "\x00".join(texts)  # one string: str.find over 8 million characters takes milliseconds
        self._starts, position = [], 0
        for text in texts:
            self._starts.append(position)
            position += len(text) + 1
        self._spans = {(p.source, p.start, p.end): row for row, p in enumerate(passages)}

    def holding(self, text: str) -> int | None:
        """The row of the first passage that holds `text` (whitespace removed), or None."""
        at = self._joined.find(_WHITESPACE.sub("", text))
        return None if at < 0 else bisect.bisect_right(self._starts, at) - 1

    def article(self, text: str) -> int | None:
        """The row of the first passage that holds one of the article's windows, tried in order (qa eval's rule)."""
        for window in article_windows(text):
            row = self.holding(window)
            if row is not None:
                return row
        return None

    def span(self, source: str, start: int, end: int) -> int | None:
        return self._spans.get((source, start, end))


def read_labels(paths: list[Path], feedback: Path | None, finder: PassageFinder) -> Labels:
    """The labelled questions of the files in `paths` (.jsonl: STARD format, else TSV) and of the feedback log.

    A question asked in several inputs (the same text) is one question, with the id it has where first read, and
    gathers their positives and negatives: a thumbs-down on a labelled question adds negatives to it."""
    labels = Labels()
    by_text: dict[str, LabelledQuestion] = {}
    sources: list[tuple[Path, list[LabelledQuestion]]] = []
    for path in paths:
        reader = read_stard if Path(path).suffix.lower() == ".jsonl" else read_tsv
        sources.append((Path(path), reader(Path(path), finder, labels)))
    if feedback is not None:
        sources.append((Path(feedback), read_votes(Path(feedback), finder, labels)))
    for _, found in sources:
        for question in found:
            known = by_text.get(question.question)
            if known is None:
                by_text[question.question] = question
                labels.questions.append(question)
                continue
            known.positives += [row for row in question.positives if row not in known.positives]
            known.negatives += [row for row in question.negatives if row not in known.negatives]
            known.articles += [text for text in question.articles if text not in known.articles]
    without = [q for q in labels.questions if not q.positives]
    for question in without:
        labels.notes.append(f"{question.where}: only thumbs-down, no passage marked helpful: no pair of its own")
    labels.questions = [q for q in labels.questions if q.positives]
    return labels


def _lines(path: Path, labels: Labels) -> list[tuple[int, str]] | None:
    """The numbered non-blank lines of `path`; None, with a problem, when it cannot be read or holds none."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        labels.problems.append(Problem(path, 0, f"cannot be read: {error.strerror or error}"))
        return None
    lines = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        try:
            text = line.decode("utf-8-sig" if number == 1 else "utf-8").strip()
        except UnicodeDecodeError:
            labels.problems.append(Problem(path, number, "not UTF-8 text"))
            continue
        if text:
            lines.append((number, text))
    if not lines and not any(p.path == path for p in labels.problems):
        labels.problems.append(Problem(path, 0, "empty file: no labelled questions"))
        return None
    return lines


def read_stard(path: Path, finder: PassageFinder, labels: Labels) -> list[LabelledQuestion]:
    """The questions of a STARD-format .jsonl file, each article matched to a passage (module docstring)."""
    found: list[LabelledQuestion] = []
    first_line: dict[str, int] = {}
    for number, line in _lines(path, labels) or []:
        def bad(reason: str) -> None:
            labels.problems.append(Problem(path, number, reason))

        try:
            qid, text, articles = read_stard_line(line)
        except ValueError as error:
            bad(str(error))
            continue
        if qid in first_line:
            bad(f"id {qid} again (first on line {first_line[qid]})")
            continue
        first_line[qid] = number
        if not text:
            bad("question must be a non-empty string")
            continue
        question = LabelledQuestion(qid, text, where=f"{path} line {number}")
        for place, (name, article) in enumerate(articles, start=1):
            passage = finder.article(article)
            if passage is None:
                bad(f"article {place} ({name}): its text is found nowhere in the corpus's passages")
                break
            if article not in question.articles:
                question.articles.append(article)
            if passage not in question.positives:
                question.positives.append(passage)
        else:
            found.append(question)
    return found


def read_tsv(path: Path, finder: PassageFinder, labels: Labels) -> list[LabelledQuestion]:
    """The questions of a TSV of question and passage id (SOURCE:START-END), one pair a line."""
    by_question: dict[str, LabelledQuestion] = {}
    for number, line in _lines(path, labels) or []:
        if line.startswith("#"):
            continue
        columns = line.split("\t")
        if len(columns) != 2 or not columns[0].strip():
            labels.problems.append(Problem(path, number, f"expected two columns, question<TAB>SOURCE:START-END, not {len(columns)}"))
            continue
        text, passage_id = columns[0].strip(), columns[1].strip()
        span = _SPAN.match(passage_id)
        if not span:
            labels.problems.append(Problem(path, number, f"passage id {passage_id!r} is not SOURCE:START-END"))
            continue
        row = finder.span(span["source"], int(span["start"]), int(span["end"]))
        if row is None:
            labels.problems.append(Problem(path, number, f"passage {passage_id} is found nowhere in the corpus's passages "
                                           "(changed since? `qa ask --json` gives the current ones)"))
            continue
        question = by_question.setdefault(text, LabelledQuestion(text, text, where=f"{path} line {number}"))
        if row not in question.positives:
            question.positives.append(row)
            question.articles.append(_WHITESPACE.sub("", finder.passages[row].text))
    return list(by_question.values())


def read_votes(path: Path, finder: PassageFinder, labels: Labels) -> list[LabelledQuestion]:
    """The questions of a feedback log, by the rules of the module docstring."""
    if not path.exists():
        labels.problems.append(Problem(path, 0, "no such feedback log"))
        return []
    log = read_feedback_log(path)
    for number, reason in log.damaged:
        labels.problems.append(Problem(path, number, reason))
    if not log.votes and not log.damaged:
        labels.problems.append(Problem(path, 0, "empty file: no votes"))
        return []
    numbers = _vote_lines(path)
    last: dict[str, tuple[int, dict | None]] = {}
    for number, vote in zip(numbers, log.votes):
        searched = vote.get("searched") or vote.get("question")
        if not isinstance(searched, str) or not searched.strip() or vote.get("rating") not in ("up", "down", "cleared"):
            labels.problems.append(Problem(path, number, 'not a vote: needs "rating" up, down or cleared and "searched" or "question"'))
            continue
        passages = vote.get("passages")
        if vote["rating"] != "cleared" and (not isinstance(passages, list) or not passages):
            labels.problems.append(Problem(path, number, "a vote without cited passages"))
            continue
        last[searched.strip()] = (number, None if vote["rating"] == "cleared" else vote)
    found = []
    for searched, (number, vote) in last.items():
        if vote is None:
            continue
        cited = sorted((p for p in vote["passages"] if isinstance(p, dict)), key=lambda p: p.get("rank", 0))
        marked = cited[:1] if vote["rating"] == "up" else cited[:DOWN_NEGATIVES]
        rows = []
        for passage in marked:
            row = _find_cited(passage, finder)
            if row is None:
                labels.problems.append(Problem(path, number, f"cited passage {passage.get('rank', '?')} ({passage.get('source', '?')}): "
                                               "its text is found nowhere in the corpus's passages (changed since the vote?)"))
                break
            rows.append(row)
        else:
            question = LabelledQuestion(searched, searched, where=f"{path} line {number}")
            if vote["rating"] == "up":
                question.positives = rows
                question.articles = [_WHITESPACE.sub("", finder.passages[row].text) for row in rows]
            else:
                question.negatives = rows
            found.append(question)
    return found


def _find_cited(passage: dict, finder: PassageFinder) -> int | None:
    source, start, end, text = (passage.get(key) for key in ("source", "start", "end", "text"))
    if isinstance(source, str) and isinstance(start, int) and isinstance(end, int):
        row = finder.span(source, start, end)
        if row is not None and _WHITESPACE.sub("", finder.passages[row].text) == _WHITESPACE.sub("", text or ""):
            return row
    return finder.holding(text) if isinstance(text, str) and _WHITESPACE.sub("", text) else None


def _vote_lines(path: Path) -> list[int]:
    """The line numbers of the votes read_feedback_log returns, in its order (it skips blank and damaged lines)."""
    numbers = []
    with open(path, "rb") as lines:
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                if isinstance(json.loads(raw.decode("utf-8")), dict):
                    numbers.append(number)
            except (UnicodeDecodeError, ValueError):
                continue
    return numbers


def check_labels(labels: Labels, skip_problems: bool, say: Callable[[str], None]) -> None:
    """Say the labels' notes; TuneError listing the problems of the labelled files (`skip_problems`: say them and go on).
    `qa calibrate` reads its labelled files the same way."""
    for note in labels.notes:
        say(note)
    if not labels.problems:
        return
    listed = [str(problem) for problem in labels.problems[:MAX_LISTED]]
    more = len(labels.problems) - len(listed)
    if more:
        listed.append(f"… and {more} more")
    if skip_problems:
        for line in listed:
            say(f"left out: {line}")
        return
    raise TuneError(f"{len(labels.problems)} line(s) of the labelled files cannot be used "
                    "(fix them, or give --skip-problems to leave them out):\n  " + "\n  ".join(listed))

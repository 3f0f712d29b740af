"""Measure retrieval quality: question sets in, flat `metric@k` numbers out (`qa eval`).

Longer than most modules: three question formats with their exact error messages, and every metric
defined here, next to the code that computes it, so that a figure in the README can be checked here.

Three formats of question set (see ../shared/eval/README.md and ../shared/eval/statutes/README.md):

- a TSV like dev_questions.tsv (id, lang, kind, case, evidence, question) about a corpus whose
  sections begin with their case number ("9 医学检查检验结果互认"); case 0 means out of scope;
- a SQuAD-format JSON (e.g. CMRC 2018): each paragraph becomes one document `<paragraph id>.md`
  headed by its article title, indexed into a temporary folder, and every question is in scope;
- a STARD-format .jsonl (e.g. statutes/stard_train.jsonl), one JSON object a line,
  {"id", "question", "articles": [{"name", "text"}, …]}: questions with the texts of their relevant
  articles, asked of the corpus as it is (an existing index, like a TSV) and all in scope. Out-of-scope
  TSV files (case 0 only, e.g. eval/statutes_out_of_scope.tsv) may be asked with it.

Each question is asked for `RANKED` (10) passages, a STARD-format one for `ARTICLE_RANKED` (100). What
is relevant, as in sentence-transformers' InformationRetrievalEvaluator: for a TSV or SQuAD file one
document per question, the one that holds the answer, that is the case (TSV: a passage whose section
starts with the question's case number) or the paragraph's document (SQuAD). A passage retrieves its
document; r is the rank of the first passage from the right document. Over the in-scope questions,
for k in KS = 1, 3, 5, 10:

    doc@k        share with r <= k: the right document (the case, for a TSV) among the top k passages'
    passage@k    share with one of the top k passages from the right document whose text, whitespace
                 removed, holds the evidence (SQuAD: one of the answer texts; `qa eval` prints it as
                 answer@k for a SQuAD file, the key is the same)
    mrr@10       mean of 1/r, 0 when r > 10 or no passage is from the right document
    ndcg@10      mean of 1/log2(1 + r), 0 when r > 10: binary relevance, one relevant document, so the
                 ideal DCG is 1 (right document first); a later passage from the same document
                 retrieves it again and adds nothing

A STARD question has one or more relevant articles, and a passage retrieves an article when one of the
article's first five 20-character windows (text[0:20], text[20:40] … text[80:100], whitespace removed from
article and passage) occurs in the passage's text; an article shorter than 20 characters is its own
window, and a tail shorter than 20 is none (a few characters match anywhere). So an article cut into
several passages is found by any piece that holds one of its first 100 characters' windows. Its
metrics (ARTICLE_METRICS, as the statutes README defines them), r the rank of the first passage that
retrieves any relevant article:

    hit@k        share with r <= k: some relevant article among the top k passages (k in ARTICLE_KS:
                 1, 3, 5, 10 and 100)
    recall@k     mean share of a question's relevant articles retrieved by the top k passages
    mrr@10       mean of 1/r, 0 when r > 10

For every format:

    top_chars    mean length in characters of the top cited passage
    declined     share of out-of-scope questions answered "not found"
    wrongly_declined  share of in-scope questions answered "not found"
    outcomes     for in-scope and out-of-scope questions, all and by script (zh-Hans, zh-Hant, en) and,
                 out of scope, by kind (near, gov, far…): the share answered, uncertain and not found

Reliability, over all questions (in and out of scope): an answer is correct when one of its first
CORRECT_WITHIN (3) cited passages is relevant (the right case or document, a relevant article); an
out-of-scope question's never is. The answer's `confidence` is meant as that probability:

    reliability  BINS (10) equal bins of confidence, [0, 0.1) … [0.9, 1.0] (the last holds 1.0), each
                 {"from", "to", "n", "confidence": the mean confidence, "correct": the share correct},
                 those two None in an empty bin
    calibration_error  the expected calibration error: sum over the bins of n/N · |confidence − correct|
    answered_questions  how many were answered "answered"
    answered_correct    the share of those that are correct: the promise that "answered" means the first
                 passages cite the answer (None when nothing was answered)

The primary metric (named in the report as "primary") is passage@1 for a TSV or SQuAD file: the page
and `qa ask` show the first passage first and the answer/uncertain/not-found decision reads it alone,
so what a user gets is right when that passage is from the right document and holds the answer; doc@1
is its precondition and nDCG@10 also rewards right documents at ranks the decision never reads. For a
STARD file it is hit@5 (ARTICLE_PRIMARY): the five cards the page shows by default hold a relevant
article; a law's answer is often spread over several articles, so rank 1 alone is too strict.
`misses` lists the in-scope questions that fail the primary metric.

Folds (`qa eval --fold I/N`): fold_of gives each question a fold 1..N from a SHA-256 hash of its id
(scripts/fit_relevance.py's stable_fold is the same hash, counted from 0), whatever the file's order or
the other questions, so that anything fitted on the other folds can be reported on fold I alone. Every
question file given is cut the same way; `fold` in the report names it.

Written answers (`qa eval --compose`, with a language model at QA_LLM_URL): every answered or uncertain
question's first COMPOSED_CARDS cards are sent, as `qa ask --compose` sends them, and the written answers are
checked sentence by sentence (qa/compose/check.py). Over them:

    composed            answers sent; failed: those that came back without text (the note says why)
    supported_share     share of the checked sentences (all answers pooled) that the passages they cite support
    fully_supported     share of the written answers whose every checked sentence is supported
    citation_precision  in-scope questions: of the citations of checked sentences (sentence, card), the share
                        whose card is relevant (the right case, document or an article, as above)
    cites_relevant      in-scope questions: share of the written answers that cite a relevant card at all
    seconds_p50         median seconds from asking to the checked answer

`qa eval --csv PATH` adds one row per run to a CSV file (a header first when the file is new):
CSV_COLUMNS, that is files (the question files, joined by ";"), fusion, questions, in_scope,
out_of_scope, the METRICS keys in order, top_chars, declined, wrongly_declined, then the
ARTICLE_METRICS keys that METRICS lacks (hit@k, recall@k), answered_correct, calibration_error and
fold. A cell is empty where the run has no such figure (declined without out-of-scope questions,
doc@k for a STARD file, hit@k for a TSV, fold without --fold).
"""

import csv
import hashlib
import json
import math
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from qa.answer import Answer, CitedPassage
from qa.decision.outcomes import ANSWERED, NOT_FOUND, OUTCOMES
from qa.documents.corpus import safe_file_name
from qa.errors import EvaluationError
from qa.text import case_number, script

KS = (1, 3, 5, 10)
RANKED = max(KS)  # passages asked for per question
# A STARD-format question is asked for 100: recall@100 is the figure that benchmark's papers publish.
ARTICLE_KS = (*KS, 100)
ARTICLE_RANKED = max(ARTICLE_KS)
METRICS = (*(f"doc@{k}" for k in KS), *(f"passage@{k}" for k in KS), "mrr@10", "ndcg@10")
ARTICLE_METRICS = (*(f"hit@{k}" for k in ARTICLE_KS), *(f"recall@{k}" for k in ARTICLE_KS), "mrr@10")
PRIMARY = "passage@1"
ARTICLE_PRIMARY = "hit@5"
WINDOW, WINDOWS = 20, 5  # an article is found by one of its first WINDOWS windows of WINDOW characters
CORRECT_WITHIN = 3  # reliability: an answer is correct when one of its first 3 passages is relevant
BINS = 10
COMPOSED_CARDS = 5  # a written answer is made from the cards `qa ask` shows by default
CSV_COLUMNS = (
    "files", "fusion", "questions", "in_scope", "out_of_scope", *METRICS, "top_chars", "declined", "wrongly_declined",
    *(key for key in ARTICLE_METRICS if key not in METRICS), "answered_correct", "calibration_error", "fold",
)

_WHITESPACE = re.compile(r"\s+")


def article_windows(text: str) -> tuple[str, ...]:
    """The strings that find an article in a passage (module docstring): its first WINDOWS windows of WINDOW
    characters, whitespace removed; the whole article when it is shorter than one window; none when it is empty."""
    text = _WHITESPACE.sub("", text)
    if len(text) < WINDOW:
        return (text,) if text else ()
    last = min(len(text) - WINDOW, (WINDOWS - 1) * WINDOW)
    return tuple(text[start : start + WINDOW] for start in range(0, last + 1, WINDOW))


@dataclass(frozen=True)
class EvalQuestion:
    """One question and what a right answer cites: a case number, a source, or articles; and evidence texts."""

    id: str
    question: str
    case: int | None = None  # TSV: the case number its section starts with; 0 = out of scope
    source: str | None = None  # SQuAD: the document that holds the answer
    evidence: tuple[str, ...] = ()  # a right passage contains one of them (whitespace removed)
    kind: str = ""
    lang: str = ""
    articles: tuple[str, ...] = ()  # STARD: the texts of the relevant articles, whitespace removed

    @property
    def in_scope(self) -> bool:
        return self.case != 0

    def articles_in(self, passage: CitedPassage) -> set[int]:
        """The positions in `articles` of the relevant articles that `passage` retrieves (one of their windows is in it)."""
        text = _WHITESPACE.sub("", passage.text)
        return {i for i, article in enumerate(self.articles) if any(window in text for window in article_windows(article))}

    def is_right_document(self, passage: CitedPassage) -> bool:
        if self.articles:
            return bool(self.articles_in(passage))
        if self.source is not None:
            return passage.source == self.source
        return case_number(passage.section) == self.case

    def holds_evidence(self, passage: CitedPassage) -> bool:
        text = _WHITESPACE.sub("", passage.text)
        return self.is_right_document(passage) and any(_WHITESPACE.sub("", e) in text for e in self.evidence)


@dataclass
class EvalReport:
    """The numbers of one evaluation (see the module docstring); `to_json` gives them flat, as
    `qa eval --json` prints them, and `csv_row` as `qa eval --csv` writes them."""

    questions: int
    in_scope: int
    out_of_scope: int
    metrics: dict[str, float]  # the METRICS keys, "doc@1" … "ndcg@10", in that order; ARTICLE_METRICS for a STARD file
    top_chars: float
    declined: float | None  # None when the set has no out-of-scope question
    wrongly_declined: float
    misses: list[str]  # ids of in-scope questions that fail the primary metric
    skipped: list[str] = field(default_factory=list)  # ids of blank questions, which cannot be asked
    outcomes: dict[str, dict[str, float]] = field(default_factory=dict)  # group -> outcome -> share, and "n"
    primary: str = PRIMARY
    reliability: list[dict] = field(default_factory=list)  # BINS bins: from, to, n, confidence, correct
    calibration_error: float | None = None  # None without questions
    answered_questions: int = 0
    answered_correct: float | None = None  # None when nothing was answered
    fold: str | None = None  # "2/5" when only that fold's questions were asked
    composing: dict | None = None  # the written answers' figures (`composition_figures`) with --compose
    # Questions the index remembers (`qa remember`, qa/search/memory.py): their figures are in sample for it.
    remembered: int = 0

    def to_json(self) -> dict:
        """{"questions", "in_scope", "out_of_scope", "primary", the metrics ("doc@1" … "ndcg@10" or "hit@1" … "mrr@10"),
        "top_chars", "declined", "wrongly_declined", "answered_questions", "answered_correct", "calibration_error",
        "reliability", "fold", "misses", "skipped", "outcomes", "remembered"}."""
        return {
            "questions": self.questions, "in_scope": self.in_scope, "out_of_scope": self.out_of_scope, "primary": self.primary,
            **self.metrics,
            "top_chars": self.top_chars, "declined": self.declined, "wrongly_declined": self.wrongly_declined,
            "answered_questions": self.answered_questions, "answered_correct": self.answered_correct,
            "calibration_error": self.calibration_error, "reliability": [dict(row) for row in self.reliability],
            "fold": self.fold, "misses": list(self.misses), "skipped": list(self.skipped), "outcomes": self.outcomes,
            "remembered": self.remembered,
            **({"composing": self.composing} if self.composing is not None else {}),
        }

    def csv_row(self, files: list[Path], fusion: str) -> list:
        """The CSV_COLUMNS values of this run of the question `files` with `fusion`; "" where a figure is None or
        not of this format."""

        def cell(key: str):
            value = self.metrics.get(key)
            return "" if value is None else value

        def blank(value):
            return "" if value is None else value

        return [
            ";".join(str(path) for path in files), fusion, self.questions, self.in_scope, self.out_of_scope,
            *(cell(key) for key in METRICS), self.top_chars, blank(self.declined), self.wrongly_declined,
            *(cell(key) for key in ARTICLE_METRICS if key not in METRICS),
            blank(self.answered_correct), blank(self.calibration_error), blank(self.fold),
        ]


def append_csv(path: Path, report: EvalReport, files: list[Path], fusion: str) -> None:
    """Add `report`'s row (EvalReport.csv_row) to the CSV file at `path`, writing the header first when the
    file is new or empty; EvaluationError when the file's header is not CSV_COLUMNS or it cannot be written."""
    path = Path(path)
    try:
        with path.open("a+", encoding="utf-8", newline="") as file:
            file.seek(0)
            header = next(csv.reader(file), None)
            writer = csv.writer(file, lineterminator="\n")
            if header is None:
                writer.writerow(CSV_COLUMNS)
            elif tuple(header) != CSV_COLUMNS:
                raise EvaluationError(f"{path} has other columns than `qa eval --csv` writes; give a new file")
            writer.writerow(report.csv_row(files, fusion))
    except (OSError, UnicodeDecodeError) as error:
        raise EvaluationError(f"cannot write the results to {path}: {getattr(error, 'strerror', None) or error}") from None


def read_tsv_questions(path: Path) -> list[EvalQuestion]:
    """Questions from a dev_questions.tsv-style file; EvaluationError names the bad line."""
    questions = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if line.startswith("#") or not line.strip():
            continue
        columns = line.split("\t")
        if len(columns) != 6 or not columns[3].strip().isdigit():
            raise EvaluationError(
                f"{path} line {number}: expected 6 tab-separated columns "
                "(id, lang, kind, case, evidence, question) with a case number"
            )
        qid, lang, kind, case, evidence, question = columns
        questions.append(
            EvalQuestion(qid, question.strip(), case=int(case), evidence=(evidence,) if evidence else (), kind=kind, lang=lang)
        )
    if not questions:
        raise EvaluationError(f"{path} holds no questions")
    return questions


def read_stard_questions(path: Path) -> list[EvalQuestion]:
    """Questions from a STARD-format .jsonl file: one JSON object a line, {"id": 17, "question": "…", "articles":
    [{"name": "…", "text": "…"}, …]}; all in scope, each with its articles' texts (whitespace removed, the same
    text twice kept once). EvaluationError names the file, the line and what is wrong with it; blank lines are allowed."""
    questions, lines = [], {}
    # split on "\n" only: str.splitlines would also cut a line at U+2028 and other separators inside a JSON string
    for number, line in enumerate(_read_text(path).split("\n"), start=1):
        if not line.strip():
            continue

        try:
            qid, question, articles = read_stard_line(line)
        except ValueError as error:
            raise EvaluationError(f"{path} line {number}: {error}") from None
        if qid in lines:  # folds and misses are by id
            raise EvaluationError(f"{path} line {number}: id {qid} again (first on line {lines[qid]})")
        lines[qid] = number
        questions.append(EvalQuestion(qid, question, articles=tuple(dict.fromkeys(text for _, text in articles))))
    if not questions:
        raise EvaluationError(f"{path} holds no questions")
    return questions


def read_stard_line(line: str) -> tuple[str, str, list[tuple[str, str]]]:
    """One line of a STARD-format .jsonl file: (id, question, [(article name, its text without whitespace)]);
    ValueError saying what is wrong with a line that is not the format (`qa eval` and `qa tune` read it alike)."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(row, dict):
        raise ValueError('expected a JSON object {"id", "question", "articles"}')
    missing = [key for key in ("id", "question", "articles") if key not in row]
    if missing:
        raise ValueError("missing " + ", ".join(f'"{key}"' for key in missing))
    qid = row["id"]
    if isinstance(qid, bool) or not isinstance(qid, (int, str)) or not str(qid).strip():
        raise ValueError(f"id must be a number or a non-empty string, not {json.dumps(qid, ensure_ascii=False)}")
    if not isinstance(row["question"], str):
        raise ValueError("question must be a string")
    if not isinstance(row["articles"], list) or not row["articles"]:
        raise ValueError('articles must be a non-empty list of {"name", "text"}')
    articles = []
    for place, article in enumerate(row["articles"], start=1):
        if not isinstance(article, dict) or not isinstance(article.get("name"), str) or not isinstance(article.get("text"), str):
            raise ValueError(f'article {place} must be an object {{"name", "text"}} with two strings')
        text = _WHITESPACE.sub("", article["text"])
        if not text:  # an empty article would be found in every passage
            raise ValueError(f"article {place} ({article['name']}) has no text")
        articles.append((article["name"], text))
    return str(qid).strip(), row["question"].strip(), articles


def read_questions(path: Path) -> list[EvalQuestion]:
    """The questions of a .jsonl (STARD) or TSV file, by the file's suffix; a SQuAD .json is read by read_squad."""
    return read_stard_questions(path) if Path(path).suffix.lower() == ".jsonl" else read_tsv_questions(path)


def read_squad(path: Path) -> tuple[dict[str, str], list[EvalQuestion]]:
    """The documents ({file name: text}) and questions of a SQuAD-format JSON file."""
    try:
        data = json.loads(_read_text(path))["data"]
        documents, questions = {}, []
        for article in data:
            for paragraph in article["paragraphs"]:
                source = f"{safe_file_name(paragraph.get('id') or str(len(documents)), '_')}.md"
                title = article.get("title", "").strip()
                documents[source] = f"# {title}\n\n{paragraph['context']}\n" if title else paragraph["context"] + "\n"
                for qa in paragraph["qas"]:
                    answers = tuple(a["text"] for a in qa["answers"] if a["text"].strip())
                    questions.append(EvalQuestion(str(qa["id"]), qa["question"].strip(), source=source, evidence=answers))
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise EvaluationError(f"{path} is not a SQuAD-format file (data → paragraphs → context, qas): {error}") from None
    if not questions:
        raise EvaluationError(f"{path} holds no questions")
    return documents, questions


def parse_fold(text: str) -> tuple[int, int]:
    """(I, N) from "I/N", fold I of N folds, 1 <= I <= N, N >= 2; EvaluationError otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)) or int(match.group(2)) < 2:
        raise EvaluationError(f"a fold is I/N, the I-th of N folds with 1 <= I <= N and N >= 2 (e.g. 2/5), not {text!r}")
    return int(match.group(1)), int(match.group(2))


def fold_of(question_id: str, folds: int) -> int:
    """The fold, 1 … `folds`, of the question with this id: a hash of the id alone, so that it stays the same
    whatever else the file holds and in whatever order."""
    return int(hashlib.sha256(str(question_id).encode("utf-8")).hexdigest(), 16) % folds + 1


def evaluate(questions: list[EvalQuestion], answers: list[Answer], skipped: list[str] | None = None,
             ranked: int = RANKED) -> EvalReport:
    """Score the answers to `questions` (same order) by the definitions in the module docstring: by articles when
    the in-scope questions have articles (a STARD file), else by their document. `ranked`: how many passages each
    question was asked for; no metric@k with k beyond it."""
    if len(questions) != len(answers):
        raise EvaluationError(f"{len(questions)} questions but {len(answers)} answers")
    scoped = [(q, a) for q, a in zip(questions, answers) if q.in_scope]
    unscoped = [a for q, a in zip(questions, answers) if not q.in_scope]
    with_articles = sum(1 for q, _ in scoped if q.articles)
    if 0 < with_articles < len(scoped):
        raise EvaluationError("questions with articles (a .jsonl file) are scored with out-of-scope questions only, "
                              "not with in-scope questions of another format")
    if with_articles:
        metrics, fails = _article_metrics(scoped, ranked), lambda q, a: not _articles_found(q, a.passages[:5])  # hit@5, the primary
    else:
        metrics, fails = _document_metrics(scoped), lambda q, a: not any(q.holds_evidence(p) for p in a.passages[:1])
    top = [a.passages[0] for _, a in scoped if a.passages]
    bins = reliability(questions, answers)
    answered = [cites_answer(q, a) for q, a in zip(questions, answers) if a.outcome == ANSWERED]
    return EvalReport(
        questions=len(questions),
        in_scope=len(scoped),
        out_of_scope=len(unscoped),
        metrics=metrics,
        top_chars=round(sum(len(p.text) for p in top) / max(1, len(top)), 1),
        declined=_share(a.outcome == NOT_FOUND for a in unscoped) if unscoped else None,
        wrongly_declined=_share(a.outcome == NOT_FOUND for _, a in scoped),
        misses=[q.id for q, a in scoped if fails(q, a)],
        skipped=list(skipped or []),
        outcomes=outcome_shares(questions, answers),
        primary=ARTICLE_PRIMARY if with_articles else PRIMARY,
        reliability=bins,
        calibration_error=calibration_error(bins),
        answered_questions=len(answered),
        answered_correct=_share(answered) if answered else None,
    )


def _document_metrics(scoped: list[tuple[EvalQuestion, Answer]]) -> dict[str, float]:
    """The METRICS of in-scope questions with one relevant document each (TSV, SQuAD)."""

    def first_rank(question: EvalQuestion, answer: Answer) -> int | None:
        return next((p.rank for p in answer.passages if question.is_right_document(p)), None)

    ranks = [first_rank(q, a) for q, a in scoped]
    metrics = {f"doc@{k}": _share(rank is not None and rank <= k for rank in ranks) for k in KS}
    metrics |= {f"passage@{k}": _share(any(q.holds_evidence(p) for p in a.passages[:k]) for q, a in scoped) for k in KS}
    metrics["mrr@10"] = _share(1 / rank if rank and rank <= 10 else 0 for rank in ranks)
    metrics["ndcg@10"] = _share(1 / math.log2(1 + rank) if rank and rank <= 10 else 0 for rank in ranks)
    return metrics


def _article_metrics(scoped: list[tuple[EvalQuestion, Answer]], ranked: int) -> dict[str, float]:
    """The ARTICLE_METRICS of in-scope questions with relevant articles (STARD), those at k up to `ranked`."""
    ks = [k for k in ARTICLE_KS if k <= ranked]
    metrics = {f"hit@{k}": _share(bool(_articles_found(q, a.passages[:k])) for q, a in scoped) for k in ks}
    metrics |= {f"recall@{k}": _share(len(_articles_found(q, a.passages[:k])) / len(q.articles) for q, a in scoped) for k in ks}
    ranks = [next((p.rank for p in a.passages if q.articles_in(p)), None) for q, a in scoped]
    metrics["mrr@10"] = _share(1 / rank if rank and rank <= 10 else 0 for rank in ranks)
    return metrics


def _articles_found(question: EvalQuestion, passages: list[CitedPassage]) -> set[int]:
    return set().union(*(question.articles_in(p) for p in passages))


def cites_answer(question: EvalQuestion, answer: Answer) -> bool:
    """Whether the answer is correct for the reliability table: one of its first CORRECT_WITHIN passages is relevant
    (the right case or document, a relevant article); never for an out-of-scope question."""
    return question.in_scope and any(question.is_right_document(p) for p in answer.passages[:CORRECT_WITHIN])


def reliability(questions: list[EvalQuestion], answers: list[Answer]) -> list[dict]:
    """The answers' confidence against how often they are correct (cites_answer), in BINS equal bins of confidence:
    per bin {"from", "to", "n", "confidence": mean, "correct": share}, the last two None in an empty bin."""
    return reliability_bins([(answer.confidence, cites_answer(question, answer)) for question, answer in zip(questions, answers)])


def reliability_bins(judged: list[tuple[float, bool]]) -> list[dict]:
    """`reliability` of (confidence, correct) pairs: also what `qa calibrate` reports of confidences it computed itself."""
    bins: list[list[tuple[float, bool]]] = [[] for _ in range(BINS)]
    for confidence, correct in judged:
        bins[min(BINS - 1, max(0, int(confidence * BINS)))].append((confidence, correct))
    return [
        {"from": round(i / BINS, 2), "to": round((i + 1) / BINS, 2), "n": len(found),
         "confidence": _share(c for c, _ in found) if found else None, "correct": _share(ok for _, ok in found) if found else None}
        for i, found in enumerate(bins)
    ]


def calibration_error(bins: list[dict]) -> float | None:
    """The expected calibration error of reliability's `bins`: sum of n/N · |confidence − correct|; None without answers."""
    total = sum(row["n"] for row in bins)
    if not total:
        return None
    return round(sum(row["n"] * abs(row["confidence"] - row["correct"]) for row in bins if row["n"]) / total, 4)


def _share(values) -> float:
    values = list(values)
    return round(sum(values) / len(values), 4) if values else 0.0


def outcome_shares(questions: list[EvalQuestion], answers: list[Answer]) -> dict[str, dict[str, float]]:
    """The share of each outcome per group: "in-scope", "in-scope zh-Hant", "out-of-scope near", …"""
    labelled = []
    for question, answer in zip(questions, answers):
        scope = "in-scope" if question.in_scope else "out-of-scope"
        names = [scope, f"{scope} {script(question.question)}"]
        if not question.in_scope and question.kind and question.kind != "oos":
            names.append(f"{scope} {question.kind}")
        labelled.append((names, answer.outcome))
    return outcome_table(labelled)


def outcome_table(labelled: list[tuple[list[str], str]]) -> dict[str, dict[str, float]]:
    """From (group names, outcome) pairs, each group's count ("n") and share of each outcome."""
    groups: dict[str, list[str]] = {}
    for names, outcome in labelled:
        for name in names:
            groups.setdefault(name, []).append(outcome)
    return {
        name: {"n": len(found), **{o: round(found.count(o) / len(found), 4) for o in OUTCOMES}}
        for name, found in sorted(groups.items())
    }


def composition_figures(questions: list[EvalQuestion], answers: list[Answer], compose: Callable) -> dict:
    """The written answers' figures (module docstring) for `answers` to `questions`; `compose(answer)` gives
    the checked Composition of an answer, or None when it is not worth composing ("not found")."""
    from qa.compose.check import supported_share

    written = []
    for question, answer in zip(questions, answers):
        composition = compose(replace(answer, passages=answer.passages[:COMPOSED_CARDS]))
        if composition is not None:
            written.append((question, answer, composition))
    texts = [(q, a, c) for q, a, c in written if not c.note]
    checked = [s for _, _, c in texts for s in c.sentences if s.supported is not None]
    cards = [(q, {p.rank: p for p in a.passages}, c) for q, a, c in texts if q.in_scope]
    citations = [q.is_right_document(on_cards[n]) for q, on_cards, c in cards
                 for s in c.sentences if s.supported is not None for n in s.cites if n in on_cards]
    cites_relevant = [any(q.is_right_document(on_cards[n]) for s in c.sentences for n in s.cites if n in on_cards)
                      for q, on_cards, c in cards]
    whole = [all(s.supported for s in c.sentences if s.supported is not None) for _, _, c in texts if c.supported_share is not None]
    seconds = sorted(c.seconds for _, _, c in texts)
    return {
        "composed": len(written), "failed": len(written) - len(texts), "sentences": len(checked),
        "supported_share": supported_share(checked),
        "fully_supported": _share(whole) if whole else None,
        "citation_precision": _share(citations) if citations else None,
        "cites_relevant": _share(cites_relevant) if cites_relevant else None,
        "seconds_p50": round(seconds[len(seconds) // 2], 2) if seconds else None,
        "notes": sorted({c.note for _, _, c in written if c.note}),
    }


def evaluate_questions(
    questions: list[EvalQuestion], ask_many: Callable[[list[str]], list[Answer]], batch: int = 64, ranked: int = RANKED
) -> EvalReport:
    """Ask every question through `ask_many` (e.g. an Assistant's, with k=`ranked`) and score the answers.

    Blank questions (CMRC's trial set has two) cannot be asked; they are left out and listed in `skipped`.
    """
    skipped = [q.id for q in questions if not q.question]
    questions = [q for q in questions if q.question]
    answers: list[Answer] = []
    for start in range(0, len(questions), batch):
        answers.extend(ask_many([q.question for q in questions[start : start + batch]]))
    return evaluate(questions, answers, skipped, ranked)


def evaluate_file(
    path: Path | list[Path], config, embedder=None, corpus_dir: Path | None = None, index_dir: Path | None = None,
    fold: tuple[int, int] | None = None, composing=None,
) -> EvalReport:
    """Evaluate a question file: a TSV (dev_questions.tsv format), a STARD-format .jsonl or a SQuAD-format .json;
    several TSV and .jsonl files are asked together (e.g. eval/seed_in_scope.tsv and eval/seed_out_of_scope.tsv, or
    stard_train.jsonl and eval/statutes_out_of_scope.tsv); beside a .jsonl, TSV files hold out-of-scope questions only.

    A TSV or .jsonl is asked of the index in `config.index_dir`, or, when `corpus_dir` is given, of an
    index of that corpus (built or brought up to date in `index_dir`, else a temporary folder). A SQuAD file's
    paragraphs become a corpus of their own, indexed into `index_dir` (kept, so a second run reuses
    its embeddings) or a temporary folder. `fold` (I, N) asks only the questions of fold I of N (fold_of).
    `composing` (qa.config.ComposerSettings): also write answers with that language model and report them.
    """
    from qa.assistant import Assistant

    paths = [Path(p) for p in path] if isinstance(path, (list, tuple)) else [Path(path)]
    squad = any(p.suffix.lower() == ".json" for p in paths)
    if squad and len(paths) > 1:
        raise EvaluationError("a SQuAD-format .json file is evaluated alone, not together with other question files")
    if squad:
        documents, questions = read_squad(paths[0])
    else:
        read = {p: read_questions(p) for p in paths}
        if any(p.suffix.lower() == ".jsonl" for p in paths):
            for p, found in read.items():
                if p.suffix.lower() != ".jsonl" and any(q.in_scope for q in found):
                    raise EvaluationError(f"{p} has in-scope questions (case other than 0); beside a .jsonl question file, "
                                          "a TSV may hold out-of-scope questions only")
        questions = [question for found in read.values() for question in found]
    if fold is not None:
        questions = [q for q in questions if fold_of(q.id, fold[1]) == fold[0]]
        if not questions:
            raise EvaluationError(f"fold {fold[0]}/{fold[1]} of {', '.join(map(str, paths))} holds no questions")
    if not squad and corpus_dir is None:
        report = _ask(Assistant(config, embedder), questions, composing)
    else:
        with tempfile.TemporaryDirectory(prefix="qa-eval-") as work:
            if squad:
                corpus_dir = Path(work) / "corpus"
                corpus_dir.mkdir()
                for source, text in documents.items():
                    (corpus_dir / source).write_text(text, encoding="utf-8")
            index_dir = Path(index_dir) if index_dir is not None else Path(work) / "index"
            assistant = Assistant(config.with_overrides(corpus_dir=corpus_dir, index_dir=index_dir), embedder)
            assistant.rebuild()
            report = _ask(assistant, questions, composing)
    if fold is not None:
        report.fold = f"{fold[0]}/{fold[1]}"
    return report



def _ask(assistant, questions: list[EvalQuestion], composing=None) -> EvalReport:
    """The report on `questions` asked of `assistant`; with `composing`, the written answers' figures too."""
    ranked = ARTICLE_RANKED if any(q.articles for q in questions) else RANKED
    memory = assistant.retriever.memory
    remembered = set(memory.questions) if memory is not None else set()
    if composing is None:
        report = evaluate_questions(questions, lambda texts: assistant.ask_many(texts, ranked), ranked=ranked)
    else:
        report = _ask_composing(assistant, questions, composing, ranked)
    report.remembered = sum(q.question in remembered for q in questions)
    return report


def _ask_composing(assistant, questions: list[EvalQuestion], composing, ranked: int) -> EvalReport:
    """The report on `questions` with the written answers' figures (`composing`)."""
    from qa.compose.composer import Composer

    composer = Composer.for_assistant(composing, assistant)
    asked: list[tuple[str, Answer]] = []

    def ask_many(texts: list[str]) -> list[Answer]:
        answers = assistant.ask_many(texts, ranked)
        asked.extend(zip(texts, answers))
        return answers

    report = evaluate_questions(questions, ask_many, ranked=ranked)
    kept = [q for q in questions if q.question]
    report.composing = composition_figures(kept, [answer for _, answer in asked], composer.compose)
    return report


def _read_text(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise EvaluationError(f"question file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise EvaluationError(f"cannot read question file {path}: {error}") from None

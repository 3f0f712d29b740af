"""Measure retrieval quality: question sets in, flat `metric@k` numbers out (`qa eval`).

Two formats of question set (see ../shared/eval/README.md):

- a TSV like dev_questions.tsv (id, lang, kind, case, evidence, question) about a corpus whose
  sections begin with their case number ("9 医学检查检验结果互认"); case 0 means out of scope;
- a SQuAD-format JSON (e.g. CMRC 2018): each paragraph becomes one document `<paragraph id>.md`
  headed by its article title, indexed into a temporary folder, and every question is in scope.

Each question is asked for `RANKED` passages. What is relevant, as in sentence-transformers'
InformationRetrievalEvaluator with one relevant document per question: the document that holds the
answer, that is the case (TSV: a passage whose section starts with the question's case number) or
the paragraph's document (SQuAD). A passage retrieves its document; r is the rank of the first
passage from the right document. Over the in-scope questions, for k in KS = 1, 3, 5, 10:

    doc@k        share with r <= k: the right document (the case, for a TSV) among the top k passages'
    passage@k    share with one of the top k passages from the right document whose text, whitespace
                 removed, holds the evidence (SQuAD: one of the answer texts; `qa eval` prints it as
                 answer@k for a SQuAD file, the key is the same)
    mrr@10       mean of 1/r, 0 when r > 10 or no passage is from the right document
    ndcg@10      mean of 1/log2(1 + r), 0 when r > 10: binary relevance, one relevant document, so the
                 ideal DCG is 1 (right document first); a later passage from the same document
                 retrieves it again and adds nothing
    top_chars    mean length in characters of the top cited passage
    declined     share of out-of-scope questions answered "not found"
    wrongly_declined  share of in-scope questions answered "not found"
    outcomes     for in-scope and out-of-scope questions, all and by script (zh-Hans, zh-Hant, en) and,
                 out of scope, by kind (near, gov, far…): the share answered, uncertain and not found

The primary metric (PRIMARY, named in the report as "primary") is passage@1: the page and `qa ask`
show the first passage first and the answer/uncertain/not-found decision reads it alone, so what a
user gets is right when that passage is from the right document and holds the answer; doc@1 is
its precondition and nDCG@10 also rewards right documents at ranks the decision never reads.

`qa eval --csv PATH` adds one row per run to a CSV file (a header first when the file is new):
CSV_COLUMNS, that is files (the question files, joined by ";"), fusion, questions, in_scope,
out_of_scope, the METRICS keys in order, top_chars, declined (empty without out-of-scope
questions) and wrongly_declined.
"""

import csv
import json
import math
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from qa.answer import Answer, CitedPassage
from qa.decision.outcomes import NOT_FOUND, OUTCOMES
from qa.documents.corpus import safe_file_name
from qa.errors import EvaluationError
from qa.text import case_number, script

KS = (1, 3, 5, 10)
RANKED = max(KS)  # passages asked for per question
METRICS = (*(f"doc@{k}" for k in KS), *(f"passage@{k}" for k in KS), "mrr@10", "ndcg@10")
PRIMARY = "passage@1"
CSV_COLUMNS = ("files", "fusion", "questions", "in_scope", "out_of_scope", *METRICS, "top_chars", "declined", "wrongly_declined")

_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class EvalQuestion:
    """One question and what a right answer cites: a case number or a source, and evidence texts."""

    id: str
    question: str
    case: int | None = None  # TSV: the case number its section starts with; 0 = out of scope
    source: str | None = None  # SQuAD: the document that holds the answer
    evidence: tuple[str, ...] = ()  # a right passage contains one of them (whitespace removed)
    kind: str = ""
    lang: str = ""

    @property
    def in_scope(self) -> bool:
        return self.case != 0

    def is_right_document(self, passage: CitedPassage) -> bool:
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
    metrics: dict[str, float]  # the METRICS keys, "doc@1" … "ndcg@10", in that order
    top_chars: float
    declined: float | None  # None when the set has no out-of-scope question
    wrongly_declined: float
    misses: list[str]  # ids of in-scope questions whose top passage lacks the evidence
    skipped: list[str] = field(default_factory=list)  # ids of blank questions, which cannot be asked
    outcomes: dict[str, dict[str, float]] = field(default_factory=dict)  # group -> outcome -> share, and "n"
    primary: str = PRIMARY

    def to_json(self) -> dict:
        """{"questions", "in_scope", "out_of_scope", "primary", "doc@1" … "ndcg@10", "top_chars", "declined",
        "wrongly_declined", "misses", "skipped", "outcomes"}."""
        return {
            "questions": self.questions, "in_scope": self.in_scope, "out_of_scope": self.out_of_scope, "primary": self.primary,
            **self.metrics,
            "top_chars": self.top_chars, "declined": self.declined, "wrongly_declined": self.wrongly_declined,
            "misses": list(self.misses), "skipped": list(self.skipped), "outcomes": self.outcomes,
        }

    def csv_row(self, files: list[Path], fusion: str) -> list:
        """The CSV_COLUMNS values of this run of the question `files` with `fusion`; declined is "" when None."""
        declined = "" if self.declined is None else self.declined
        return [";".join(str(path) for path in files), fusion, self.questions, self.in_scope, self.out_of_scope,
                *(self.metrics[key] for key in METRICS), self.top_chars, declined, self.wrongly_declined]


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


def evaluate(questions: list[EvalQuestion], answers: list[Answer], skipped: list[str] | None = None) -> EvalReport:
    """Score the answers to `questions` (same order) by the definitions in the module docstring."""
    if len(questions) != len(answers):
        raise EvaluationError(f"{len(questions)} questions but {len(answers)} answers")
    scoped = [(q, a) for q, a in zip(questions, answers) if q.in_scope]
    unscoped = [a for q, a in zip(questions, answers) if not q.in_scope]

    def share(values) -> float:
        values = list(values)
        return round(sum(values) / len(values), 4) if values else 0.0

    def first_rank(question: EvalQuestion, answer: Answer) -> int | None:
        return next((p.rank for p in answer.passages if question.is_right_document(p)), None)

    ranks = [first_rank(q, a) for q, a in scoped]
    top = [a.passages[0] if a.passages else None for _, a in scoped]
    metrics = {f"doc@{k}": share(rank is not None and rank <= k for rank in ranks) for k in KS}
    metrics |= {f"passage@{k}": share(any(q.holds_evidence(p) for p in a.passages[:k]) for q, a in scoped) for k in KS}
    metrics["mrr@10"] = share(1 / rank if rank and rank <= 10 else 0 for rank in ranks)
    metrics["ndcg@10"] = share(1 / math.log2(1 + rank) if rank and rank <= 10 else 0 for rank in ranks)
    return EvalReport(
        questions=len(questions),
        in_scope=len(scoped),
        out_of_scope=len(unscoped),
        metrics=metrics,
        top_chars=round(sum(len(p.text) for p in top if p) / max(1, sum(1 for p in top if p)), 1),
        declined=share(a.outcome == NOT_FOUND for a in unscoped) if unscoped else None,
        wrongly_declined=share(a.outcome == NOT_FOUND for _, a in scoped),
        misses=[q.id for q, a in scoped if not any(q.holds_evidence(p) for p in a.passages[:1])],
        skipped=list(skipped or []),
        outcomes=outcome_shares(questions, answers),
    )


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


def evaluate_questions(
    questions: list[EvalQuestion], ask_many: Callable[[list[str]], list[Answer]], batch: int = 64
) -> EvalReport:
    """Ask every question through `ask_many` (e.g. an Assistant's, with k=RANKED) and score the answers.

    Blank questions (CMRC's trial set has two) cannot be asked; they are left out and listed in `skipped`.
    """
    skipped = [q.id for q in questions if not q.question]
    questions = [q for q in questions if q.question]
    answers: list[Answer] = []
    for start in range(0, len(questions), batch):
        answers.extend(ask_many([q.question for q in questions[start : start + batch]]))
    return evaluate(questions, answers, skipped)


def evaluate_file(
    path: Path | list[Path], config, embedder=None, corpus_dir: Path | None = None, index_dir: Path | None = None
) -> EvalReport:
    """Evaluate a question file: a TSV (dev_questions.tsv format) or a SQuAD-format .json; several
    TSV files are asked together (e.g. eval/seed_in_scope.tsv and eval/seed_out_of_scope.tsv).

    A TSV is asked of the index in `config.index_dir`, or, when `corpus_dir` is given, of a fresh
    index of that corpus (built into `index_dir`, else a temporary folder). A SQuAD file's
    paragraphs become a corpus of their own, indexed into `index_dir` (kept, so a second run reuses
    its embeddings) or a temporary folder.
    """
    from qa.assistant import Assistant

    paths = [Path(p) for p in path] if isinstance(path, (list, tuple)) else [Path(path)]
    squad = any(p.suffix.lower() == ".json" for p in paths)
    if squad and len(paths) > 1:
        raise EvaluationError("a SQuAD-format .json file is evaluated alone, not together with other question files")
    if squad:
        documents, questions = read_squad(paths[0])
    else:
        questions = [question for p in paths for question in read_tsv_questions(p)]
    if not squad and corpus_dir is None:
        return _ask(Assistant(config, embedder), questions)
    with tempfile.TemporaryDirectory(prefix="qa-eval-") as work:
        if squad:
            corpus_dir = Path(work) / "corpus"
            corpus_dir.mkdir()
            for source, text in documents.items():
                (corpus_dir / source).write_text(text, encoding="utf-8")
        index_dir = Path(index_dir) if index_dir is not None else Path(work) / "index"
        assistant = Assistant(config.with_overrides(corpus_dir=corpus_dir, index_dir=index_dir), embedder)
        assistant.rebuild()
        return _ask(assistant, questions)


def _ask(assistant, questions: list[EvalQuestion]) -> EvalReport:
    return evaluate_questions(questions, lambda texts: assistant.ask_many(texts, RANKED))


def _read_text(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise EvaluationError(f"question file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise EvaluationError(f"cannot read question file {path}: {error}") from None

"""`qa calibrate`: the index's own verdict, fitted on its library's labelled questions and reported held out.

The labelled questions (the files `qa tune` reads, qa/tuning/pairs.py) are asked of the current index with the
current model through the Assistant, as `qa eval` asks them (RANKED passages); an answer cites when one of its
first 3 passages retrieves a relevant text (qa/evaluation.py `cites_answer`): what "answered" promises. Questions
the library does not answer (`qa eval`'s TSV, case 0: eval/statutes_out_of_scope.tsv) may be given too; they never
cite. The evidence of each answer is what the decision reads, so every calibration below is computed from it
without asking again.

Two fits are tried, each by the rules of the shipped fit (qa/decision/fitting.py), per language:

    shipped weights   the shipped logistic, with this index's own bars
    refit weights     a logistic refitted on these questions (label: the first 3 cite; every question weighs
                      the same, so the confidence estimates the share that cite among questions like these),
                      with its own bars; unless the model was tuned on them (`learned_labelled_questions`), it
                      also reads DOCUMENT_PRIOR, counted on the questions it is fitted on, each without its own

    uncertain_from    the IN_DECLINED quantile of the in-scope questions that cite their answer
    answered_from     the lowest bar at which ANSWERED_PRECISION of the questions reaching it cite their answer;
                      with out-of-scope questions (MIN_GROUP or more in the language), at most NEAR_ANSWERED of
                      the near misses and OTHER_ANSWERED of the others reach it; without them, never below the
                      shipped bar: a lower one would be judged on answerable questions only, and nothing would
                      say how many questions the library does not answer it lets through

Held out by construction: each question's fold (1 … FOLDS) is a hash of its id (qa/evaluation.py `fold_of`, the
folds of `qa eval --fold`; `verdict_folds` when the file is itself one of those folds); each fold is decided by a
fit made without it, and the folds' outcomes are pooled. The refit weights are kept when they are better held
out: a lower calibration error, without breaking the precision promise (by more than its standard error) where the
shipped weights keep it. The chosen fit, made again on every question, is written beside the index
(qa/decision/verdict.py) with the figures: the shipped calibration on the same questions, held out, and in sample.

Only languages with MIN_QUESTIONS labelled in-scope questions or more get bars of their own; questions in the
others are judged by the shipped calibration, and their questions are left out of the fit and the figures.
"""

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from qa.config import Config
from qa.decision.calibration import DOCUMENT_PRIOR, FEATURES, INDEX, INDEX_FEATURES, LANGUAGES, Calibration
from qa.decision.fitting import (
    ANSWERED_PRECISION,
    MIN_GROUP,
    NEAR_ANSWERED,
    OTHER_ANSWERED,
    answered_bar,
    fit_logistic,
    precise,
    uncertain_bar,
)
from qa.decision.outcomes import ANSWERED, NOT_FOUND, OUTCOMES
from qa.decision.verdict import IndexVerdict, model_identity, write_verdict
from qa.errors import CalibrationError
from qa.evaluation import RANKED, EvalQuestion, calibration_error, cites_answer, fold_of, read_tsv_questions, reliability_bins
from qa.text import language
from qa.tuning.report import CARD_FILE

FOLDS = 5
# Per language: with five folds, each fit sees 40 of 50 questions, and a bar is judged on the MIN_GROUP (20) or
# more that reach it; with fewer, a fold's bars would rest on a handful of questions.
MIN_QUESTIONS = 50
LANGUAGE_NAMES = {"zh": "Chinese", "en": "English"}
WEIGHTS = ("shipped weights", "refit weights")


@dataclass(frozen=True)
class Asked:
    """One labelled question as the index answered it: the evidence the decision reads and whether it cites."""

    id: str
    question: str
    in_scope: bool
    kind: str  # an out-of-scope question's kind ("near", "far" …); "" in scope
    evidence: dict[str, float]  # {} when nothing was found
    cites: bool  # one of the first 3 passages retrieves a relevant text
    document: str = ""  # the source of the first passage ("" when nothing was found)
    answered_by: tuple[str, ...] = ()  # the sources of its labelled passages (none out of scope)

    @property
    def language(self) -> str:
        return language(self.question)


def calibrate(config: Config, labelled: list[Path], out_of_scope: list[Path] = (), folds: int = FOLDS,
              skip_problems: bool = False, say: Callable[[str], None] = lambda message: None,
              progress: Callable[[int, int], None] | None = None, embedder=None,
              leave_out: tuple[int, int] | None = None) -> IndexVerdict:
    """Fit the verdict of the index in `config.index_dir` with `config.model` on the questions of `labelled` (STARD
    .jsonl, TSV of question<TAB>SOURCE:START-END) and `out_of_scope` (`qa eval` TSVs, case 0), write it beside the
    index and return it. TuneError for problems in the labelled files (as `qa tune`), CalibrationError for too few
    questions or an out-of-scope file with in-scope questions. `embedder`: the Embedder of `config.model`, if one is loaded.
    `leave_out` (I, N): the questions of fold I of N (`qa eval --fold`) are not used, labelled or out of scope (`qa tune`
    keeps its held-out fold clean of the verdict too)."""
    from qa.assistant import Assistant
    from qa.tuning.negatives import ask_all
    from qa.tuning.pairs import PassageFinder, check_labels, read_labels

    started = time.monotonic()
    assistant = Assistant(config, embedder)
    without_memory(assistant, say)
    labels = read_labels(list(labelled), None, PassageFinder(assistant.index.passages))
    check_labels(labels, skip_problems, say)
    outside = [question for path in out_of_scope for question in _out_of_scope(Path(path))]
    if leave_out is not None:
        labels.questions = [q for q in labels.questions if fold_of(q.id, leave_out[1]) != leave_out[0]]
        outside = [q for q in outside if fold_of(q.id, leave_out[1]) != leave_out[0]]
    counts = {name: sum(1 for q in labels.questions if language(q.question) == name) for name in LANGUAGES}
    languages = [name for name in LANGUAGES if counts[name] >= MIN_QUESTIONS]
    if not languages:
        found = " and ".join(f"{counts[name]} in {LANGUAGE_NAMES[name]}" for name in LANGUAGES)
        raise CalibrationError(f"too few labelled questions, {found}: a verdict needs at least {MIN_QUESTIONS} in a language "
                               f"(its bars are judged on {MIN_GROUP} or more questions of each of {folds} folds' fits); "
                               "label more questions")
    for name in LANGUAGES:
        if 0 < counts[name] < MIN_QUESTIONS:
            say(f"only {counts[name]} labelled questions in {LANGUAGE_NAMES[name]} (fewer than {MIN_QUESTIONS}): "
                "they keep the shipped calibration")
    passages = assistant.index.passages
    # Each question with the documents its labelled passages lie in (none out of scope): the document prior's counts.
    questions = ([(q.eval_question(), tuple(sorted({passages[row].source for row in q.positives}))) for q in labels.questions]
                 + [(q, ()) for q in outside])
    say(f"asking the {len(questions)} questions of {config.index_dir} with {config.model}")
    answers = ask_all([q for q, _ in questions], lambda texts: assistant.ask_many(texts, RANKED), progress=progress)
    asked = [Asked(q.id, q.question, q.in_scope, "" if q.in_scope else q.kind, dict(a.evidence), cites_answer(q, a),
                   a.passages[0].source if a.passages else "", answered_by)
             for (q, answered_by), a in zip(questions, answers)]
    rows = [row for row in asked if row.language in languages]
    shipped = assistant.shipped_calibration
    prior = not learned_labelled_questions(assistant.embedder.model_folder)
    candidates = {name: held_out(rows, shipped, refit=name == "refit weights", folds=folds, prior=prior) for name in WEIGHTS}
    chosen = choose(candidates)
    final = fit(rows, shipped, refit=chosen == "refit weights", prior=prior)
    report = {
        "by": "qa calibrate", "fitted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "index": str(config.index_dir), "labelled": [str(p) for p in labelled], "out_of_scope": [str(p) for p in out_of_scope],
        "left out": f"fold {leave_out[0]}/{leave_out[1]}" if leave_out else None,
        "questions": {"in scope": sum(r.in_scope for r in rows), "out of scope": sum(not r.in_scope for r in rows),
                      "left out (other languages)": len(asked) - len(rows), "labelled lines left out": len(labels.problems)},
        "languages": languages, "folds": folds, "weights": chosen,
        "document prior": ("read by the refit weights" if prior else
                           "left out: the model was tuned by `qa tune`, and has learned where its questions are answered"),
        "figures": {"shipped": figures(rows, decisions(shipped, rows)), "held out": candidates[chosen][0],
                    "in sample": figures(rows, decisions(final, rows))},
        "held out by weights": {name: figures_ for name, (figures_, _) in candidates.items()},
        "thresholds": {"shipped": {name: list(shipped.thresholds[name]) for name in languages},
                       "index": {name: list(final.thresholds[name]) for name in languages}},
    }
    report["seconds"] = round(time.monotonic() - started, 1)
    verdict = IndexVerdict(replace(final, fitted={"by": "qa calibrate"}), model_identity(assistant.embedder), report)
    write_verdict(config.index_dir, verdict)
    return verdict


def without_memory(assistant, say: Callable[[str], None]) -> None:
    """Ask with `assistant` as if its index remembered no question (qa/search/memory.py): the labelled questions
    are the ones `qa remember` keeps, and a question that finds itself lifts its own passages. The verdict is then
    fitted on the plain evidence; with a memory, a lifted passage's evidence is weaker, and "answered" is rarer,
    not less sure."""
    if assistant.retriever.memory is not None:
        say(f"asking as if {assistant.config.index_dir} remembered no question (its memory holds labelled questions)")
        assistant.retriever.memory = None


def _out_of_scope(path: Path) -> list[EvalQuestion]:
    """The questions of a `qa eval` TSV that must all be out of scope (case 0)."""
    questions = read_tsv_questions(path)
    inside = [q.id for q in questions if q.in_scope]
    if inside:
        raise CalibrationError(f"{path} has questions with a case number ({', '.join(inside[:5])}…): questions the library "
                               "answers go in the labelled files, with their passages; this file holds case 0 only")
    return questions


def learned_labelled_questions(model_folder: Path | None) -> bool:
    """Whether the model in `model_folder` was tuned by `qa tune` (its card, tune.json, is there): it has learned where
    its labelled questions are answered, and the document prior then answered more of the questions it never saw,
    less surely (README), so its verdict reads no DOCUMENT_PRIOR."""
    return model_folder is not None and (Path(model_folder) / CARD_FILE).is_file()


def evidence_matrix(evidence: list[dict[str, float]], features: tuple[str, ...]) -> np.ndarray:
    return np.array([[found.get(name, 0.0) for name in features] for found in evidence], dtype=np.float64)


def with_prior(row: Asked, calibration: Calibration, own: bool = False) -> dict[str, float]:
    """The row's evidence with the DOCUMENT_PRIOR `calibration` gives its first passage (as fitted on `row` itself when
    `own`: its own answer left out of the count); as asked when `calibration` reads none."""
    if not calibration.labelled or not row.evidence:
        return row.evidence
    asked_by = row.answered_by if own and row.in_scope else None
    return {**row.evidence, DOCUMENT_PRIOR: calibration.document_prior(row.document, asked_by)}


def fit(rows: list[Asked], shipped: Calibration, refit: bool, prior: bool = False) -> Calibration:
    """A calibration for the languages of `rows`: the shipped weights or weights refitted on `rows` (reading the
    DOCUMENT_PRIOR of `rows`' labelled answers too, with `prior`), and bars placed by the rules of the module docstring."""
    if refit:
        inside = [row for row in rows if row.in_scope] if prior else []
        counted = Calibration({}, 0.0, {}, name=INDEX, answers=dict(Counter(source for row in inside for source in row.answered_by)),
                              labelled=len(inside))
        features = INDEX_FEATURES if counted.labelled else FEATURES
        evidence = [with_prior(row, counted, own=True) for row in rows]
        w = fit_logistic(evidence_matrix(evidence, features), np.array([row.cites for row in rows], dtype=float), np.ones(len(rows)))
        calibration = replace(counted, weights=dict(zip(features, (round(float(v), 5) for v in w[1:]))), bias=round(float(w[0]), 5))
    else:
        calibration = Calibration(dict(shipped.weights), shipped.bias, {}, name=INDEX)
        evidence = [row.evidence for row in rows]
    # Bars from the plain score, as the shipped fit places them: the bar that Calibration.confidence keeps detail
    # evidence above is the one being found.
    scores = [calibration.score(found) if found else 0.0 for found in evidence]
    thresholds = {}
    for name in sorted({row.language for row in rows}):
        mine = [(row, score) for row, score in zip(rows, scores) if row.language == name]
        judged = [(score, row.cites) for row, score in mine]
        outside = {"near": [], "other": []}
        for row, score in mine:
            if not row.in_scope:
                outside["near" if row.kind == "near" else "other"].append(score)
        checked = any(len(values) >= MIN_GROUP for values in outside.values())

        def fine(bar: float) -> bool:
            return precise(judged, bar) and all(
                np.mean(np.asarray(values) >= bar) <= (NEAR_ANSWERED if key == "near" else OTHER_ANSWERED)
                for key, values in outside.items() if len(values) >= MIN_GROUP)

        answered_from = answered_bar(fine, floor=0.0 if checked else shipped.thresholds[name][1])
        uncertain_from = uncertain_bar([score for row, score in mine if row.in_scope and row.cites])
        thresholds[name] = (round(min(uncertain_from, answered_from), 4), answered_from)
    return replace(calibration, thresholds=thresholds)


def decisions(calibration: Calibration, rows: list[Asked]) -> list[tuple[str, float]]:
    """Each row's outcome and confidence by `calibration`, as the assistant decides it."""
    found = []
    for row in rows:
        if not row.evidence:
            found.append((NOT_FOUND, 0.0))
            continue
        confidence = calibration.confidence(with_prior(row, calibration), row.question)
        found.append((calibration.outcome(confidence, row.question), confidence))
    return found


def held_out(rows: list[Asked], shipped: Calibration, refit: bool, folds: int, prior: bool = False) -> tuple[dict, list[tuple[str, float]]]:
    """The figures and decisions of each row by a fit made without its fold (the folds pooled)."""
    decided: list[tuple[str, float] | None] = [None] * len(rows)
    fold = verdict_folds(rows, folds)
    for k in range(1, folds + 1):
        inside = [i for i, f in enumerate(fold) if f == k]
        if not inside:
            continue
        calibration = fit([row for row, f in zip(rows, fold) if f != k], shipped, refit, prior)
        for i, found in zip(inside, decisions(calibration, [rows[i] for i in inside])):
            decided[i] = found
    return figures(rows, decided), decided


def verdict_folds(rows: list[Asked], folds: int) -> list[int]:
    """Each row's fold for the held-out figures: its fold of `qa eval --fold` (a hash of its id); or, when the
    questions of a language all fall in one (a labelled file that is itself one fold of `qa eval --fold`), the hash's
    next digit in base `folds`, so that they still spread over the folds and each has a fit made without it."""
    first = [fold_of(row.id, folds) for row in rows]
    spread = all(len({f for f, row in zip(first, rows) if row.language == name}) > 1 for name in {row.language for row in rows})
    return first if spread else [(fold_of(row.id, folds * folds) - 1) // folds + 1 for row in rows]


def figures(rows: list[Asked], decided: list[tuple[str, float]]) -> dict:
    """Outcome shares in and out of scope (out of scope also by kind), how many were answered and the share of those
    that cite their answer (the promise), and the calibration error over all the questions."""
    def shares(selected: list[str]) -> dict:
        return {"n": len(selected), **{o: round(selected.count(o) / len(selected), 4) for o in OUTCOMES}}

    result = {"in scope": shares([o for row, (o, _) in zip(rows, decided) if row.in_scope])}
    outside = [(row, o) for row, (o, _) in zip(rows, decided) if not row.in_scope]
    if outside:
        result["out of scope"] = shares([o for _, o in outside])
        for kind in sorted({row.kind for row, _ in outside if row.kind}):
            result[f"out of scope {kind}"] = shares([o for row, o in outside if row.kind == kind])
    answered = [row.cites for row, (o, _) in zip(rows, decided) if o == ANSWERED]
    result["answered"] = len(answered)
    result["answered precision"] = round(sum(answered) / len(answered), 4) if answered else None
    result["calibration error"] = calibration_error(reliability_bins([(c, row.cites) for row, (_, c) in zip(rows, decided)]))
    return result


def choose(candidates: dict[str, tuple[dict, list]]) -> str:
    """"refit weights" when, held out, their calibration error is lower and they keep the precision promise
    wherever the shipped weights keep it; else "shipped weights". A precision counts as kept unless it falls short
    by more than its standard error: a hundred answered questions measure it to about 3 points, and a shortfall
    within that (0.896 against 0.9) once kept shipped weights whose confidence was off by 0.38 against 0.036."""
    shipped, refit = candidates["shipped weights"][0], candidates["refit weights"][0]

    def keeps(found: dict) -> bool:
        precision, answered = found["answered precision"], found["answered"]
        if precision is None:
            return True
        error = math.sqrt(ANSWERED_PRECISION * (1 - ANSWERED_PRECISION) / answered)
        return precision >= ANSWERED_PRECISION - error

    better = (refit["calibration error"] or 0.0) < (shipped["calibration error"] or 0.0)
    return "refit weights" if better and (keeps(refit) or not keeps(shipped)) else "shipped weights"


def table(verdict: IndexVerdict) -> list[str]:
    """The figures as lines: the shipped calibration, the index's own held out and in sample, side by side."""
    report = verdict.report
    counts = report["questions"]
    lines = [f"{counts['in scope']} labelled questions, {counts['out of scope']} out of scope; {report['folds']} folds; "
             f"languages: {', '.join(LANGUAGE_NAMES[name] for name in report['languages'])}; weights: {report['weights']}",
             f"document prior: {report.get('document prior', 'none (fitted before it was read)')}"]
    lines.append(f"{'':30} {'in scope':>9} {'answered':>9} {'uncertain':>10} {'not found':>10}   {'answered':>8} {'of them citing':>14}"
                 f"   {'out of scope answered':>21} {'not found':>10}   {'calibration error':>17}")
    names = {"shipped": "shipped calibration", "held out": "this index's, held out", "in sample": "this index's, in sample"}
    for key, name in names.items():
        found = report["figures"][key]
        inside, outside = found["in scope"], found.get("out of scope")
        precision = "-" if found["answered precision"] is None else f"{found['answered precision']:.3f}"
        out = f"{outside['answered']:21.3f} {outside['not_found']:10.3f}" if outside else f"{'-':>21} {'-':>10}"
        error = "-" if found["calibration error"] is None else f"{found['calibration error']:.3f}"
        lines.append(f"{name:30} {inside['n']:9d} {inside['answered']:9.3f} {inside['uncertain']:10.3f} {inside['not_found']:10.3f}"
                     f"   {found['answered']:8d} {precision:>14}   {out}   {error:>17}")
    for name in report["languages"]:
        low, high = report["thresholds"]["index"][name]
        was_low, was_high = report["thresholds"]["shipped"][name]
        lines.append(f"{LANGUAGE_NAMES[name]}: uncertain from {was_low:.4f} -> {low:.4f}, answered from {was_high:.3f} -> {high:.3f}")
    held = report["figures"]["held out"]["answered precision"]
    if held is not None and held < ANSWERED_PRECISION:  # the bar is placed in sample; held out it may fall short
        lines.append(f"note: held out, {held:.3f} of the answered questions cite their answer, below the {ANSWERED_PRECISION} "
                     "promised: more labelled questions place the bar more surely")
    return lines

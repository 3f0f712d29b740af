"""Fit the relevance decision (qa/decision/relevance.py) and report it on questions it never saw; writes qa/decision/data/relevance.json.

Questions (in scope = the corpus answers it):

    seed in      eval/seed_in_scope.tsv on the seed corpus (zh-Hans, zh-Hant, en)
    seed out     eval/seed_out_of_scope.tsv on the seed corpus (near misses, government services, unrelated)
    cmrc in      CMRC 2018 trial questions on their own paragraphs          (../shared/eval)
    cmrc→seed    the same CMRC questions asked of the seed corpus (out: real outside questions)
    seed→cmrc    the seed questions asked of the CMRC paragraphs (out)
    drcd in      DRCD dev questions on their own paragraphs: never fitted on, reported only
    statutes in  STARD training questions on the statute library (../shared/eval/statutes: 1,512 laws)
    statutes out eval/statutes_out_of_scope.tsv on the statute library (near misses: local, foreign and
                 repealed law; far: unrelated)
    dev          ../shared/eval/dev_questions.tsv on the seed: a smoke test, never fitted on

Every group is asked through the real assistant (real indexes built in --work, kept between runs),
so the evidence is exactly what `qa ask` computes. The outcomes are defined by what they promise:

    answered    the first passages cite the answer: a right passage among the first 3 (the case, the
                document, a relevant article; `cites`), with probability ANSWERED_PRECISION or more
    not found   the corpus has nothing on it

so the confidence is a logistic regression over qa.decision.calibration.FEATURES of `cites` (an
out-of-scope question never cites its answer), with each group weighted equally within its class.
What places the outcomes on a corpus is the corpus itself: the dense and second-encoder evidence are
measured against how off-topic questions score on it (qa/decision/background.py), the coverage against
its own keyword statistics; the weights are shared by every corpus. Thresholds, per language (Chinese
in either script, English), since English questions sit lower:

    uncertain_from  the lowest of the language's in-scope groups' 0.5th percentiles, over the questions whose
                    first 3 passages cite the answer: below it, "not found" (a question whose answer
                    retrieval missed may fall below; on the statute library, 1.4% of in-scope questions)
    answered_from   the lowest value at which, on every corpus, at least ANSWERED_PRECISION of the
                    questions reaching it cite their answer, and at most 7% of the language's near
                    misses and 1% of its other out-of-scope questions of every group reach it

The logistic has, besides the five kinds of evidence, an English indicator and English-only
copies of dense, second and coverage (qa.decision.calibration.expand_evidence).

Held out: ten folds. A seed question's fold is its case (in scope) or a hash of its id (out of
scope); a CMRC question's is a hash of its paragraph. Each fold's questions are decided by a fit
and thresholds made without that fold (so a whole case is unseen), and the pooled held-out
outcomes are printed next to the in-sample ones of the final fit on everything.

    .venv/bin/python scripts/fit_relevance.py [--work /tmp/qa-fit] [--no-write] [--reuse | --groups "seed in,seed out"]

--groups asks only the named groups again and takes the others' evidence from the last run: for a
change that moves only those (e.g. English questions' ranking: seed in, seed out, seed→cmrc, dev).
"""

import argparse
import hashlib
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from qa.assistant import Assistant  # noqa: E402
from qa.config import Config  # noqa: E402
from qa.decision.calibration import FEATURES, LANGUAGES, Calibration, calibration_path, expand_evidence  # noqa: E402
from qa.decision.fitting import IN_DECLINED, MIN_GROUP, NEAR_ANSWERED, OTHER_ANSWERED, answered_bar, fit_logistic, precise  # noqa: E402
from qa.evaluation import RANKED, cites_answer, outcome_table, read_squad, read_stard_questions, read_tsv_questions  # noqa: E402
from qa.text import language, script  # noqa: E402

EVAL = PROJECT / "eval"
SHARED = PROJECT.parent / "shared" / "eval"
STATUTES = SHARED / "statutes"
FOLDS = 10
# The promises' figures and the rules that place the bars are shared with `qa calibrate` (qa/decision/fitting.py);
# MIN_GROUP: groups smaller than it (CMRC's three traditional-script questions) set no threshold.


CORPUS_OF = {  # group -> the corpus its questions are asked of
    "seed in": "seed", "seed out": "seed", "cmrc in": "cmrc", "cmrc→seed": "seed", "seed→cmrc": "cmrc",
    "drcd in": "drcd", "dev": "seed", "statutes in": "statutes", "statutes out": "statutes",
}


def stable_fold(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest(), 16) % FOLDS


def squad_corpus(path: Path, folder: Path):
    """Write a SQuAD file's paragraphs as documents into folder; returns its non-blank questions."""
    documents, questions = read_squad(path)
    folder.mkdir(parents=True, exist_ok=True)
    for source, text in documents.items():
        target = folder / source
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
    return [q for q in questions if q.question]


def ask(assistant: Assistant, questions: list[str]) -> list:
    answers = []
    for start in range(0, len(questions), 64):
        answers.extend(assistant.ask_many(questions[start : start + 64], RANKED))
        print(f"\r  asked {len(answers)}/{len(questions)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return answers


def collect(work: Path, groups: set[str] | None = None, statutes_index: Path | None = None) -> list[dict]:
    """One row per (question, corpus) with its group, class, fold, script and evidence; only the
    rows of `groups` when given (None: all)."""
    if not SHARED.exists():
        sys.exit(f"{SHARED} is missing: the CMRC and DRCD sets live in ../shared/eval (see README, Evaluating)")
    seed_in = read_tsv_questions(EVAL / "seed_in_scope.tsv")
    seed_out = read_tsv_questions(EVAL / "seed_out_of_scope.tsv")
    dev = read_tsv_questions(SHARED / "dev_questions.tsv")
    stard = read_stard_questions(STATUTES / "stard_train.jsonl")
    statutes_out = read_tsv_questions(EVAL / "statutes_out_of_scope.tsv")
    cmrc = squad_corpus(SHARED / "cmrc2018_trial.json", work / "cmrc-corpus")
    drcd = squad_corpus(SHARED / "drcd_dev.json", work / "drcd-corpus")
    seed_fold = {q.id: (q.case - 1 if q.in_scope else stable_fold(q.id)) for q in seed_in + seed_out}
    plan = [
        ("seed in", "seed", seed_in, True, lambda q: seed_fold[q.id]),
        ("seed out", "seed", seed_out, False, lambda q: seed_fold[q.id]),
        ("cmrc in", "cmrc", cmrc, True, lambda q: stable_fold(q.source)),
        ("cmrc→seed", "seed", cmrc, False, lambda q: stable_fold(q.source)),
        ("seed→cmrc", "cmrc", seed_in + seed_out, False, lambda q: seed_fold[q.id]),
        ("drcd in", "drcd", drcd, True, lambda q: -1),
        ("statutes in", "statutes", stard, True, lambda q: stable_fold(q.id)),
        ("statutes out", "statutes", statutes_out, False, lambda q: stable_fold(q.id)),
        ("dev", "seed", dev, None, lambda q: -1),
    ]
    assert {step[0]: step[1] for step in plan} == CORPUS_OF
    if groups is not None:
        unknown = groups - {group for group, *_ in plan}
        if unknown:
            sys.exit(f"unknown groups {sorted(unknown)}; the groups are {[group for group, *_ in plan]}")
        plan = [step for step in plan if step[0] in groups]
    assistants = {}
    corpora = (("seed", PROJECT / "corpus"), ("cmrc", work / "cmrc-corpus"), ("drcd", work / "drcd-corpus"),
               ("statutes", STATUTES / "corpus"))
    for name, corpus in corpora:
        if not any(step[1] == name for step in plan):
            continue
        print(f"index of {name}", file=sys.stderr)
        index = statutes_index if name == "statutes" and statutes_index else work / f"{name}-index"
        assistants[name] = Assistant(Config(corpus_dir=corpus, index_dir=index))
        if index != statutes_index:  # the library's index is built once, outside (about 20 minutes)
            assistants[name].rebuild()
    rows = []
    for group, corpus, questions, in_scope, fold in plan:
        print(f"{group}: {len(questions)} questions", file=sys.stderr)
        for question, answer in zip(questions, ask(assistants[corpus], [q.question for q in questions])):
            rows.append({
                "group": group, "id": question.id, "question": question.question, "script": script(question.question),
                "kind": question.kind if group == "seed out" else "", "fold": fold(question),
                "in_scope": question.in_scope if in_scope is None else in_scope,
                "fitted": group not in ("drcd in", "dev"), "evidence": answer.evidence,
                "right": bool(answer.passages) and question.is_right_document(answer.passages[0]),
                "cites": cites_answer(question, answer),  # what "answered" promises: a right passage in the first 3
            })
    return rows


def features(rows: list[dict]) -> np.ndarray:
    return np.array([[evidence(row).get(name, 0.0) for name in FEATURES] for row in rows], dtype=np.float64)


def evidence(row: dict) -> dict:
    return expand_evidence(row["evidence"], row["script"]) if row["evidence"] else {}


def class_weights(rows: list[dict]) -> np.ndarray:
    """Each class weighs half; its groups (and, for seed, scripts) share that half equally."""
    def unit(row):
        return (row["in_scope"], row["group"], row["script"] if row["group"].startswith("seed") else "")
    units: dict = {}
    for row in rows:
        units[unit(row)] = units.get(unit(row), 0) + 1
    per_class = {label: sum(1 for key in units if key[0] == label) for label in (True, False)}
    return np.array([0.5 / per_class[row["in_scope"]] / units[unit(row)] for row in rows])


def thresholds(rows: list[dict], confidence: np.ndarray) -> dict[str, tuple[float, float]]:
    """Per language (qa.text.language): (uncertain_from, answered_from) by the rules in the docstring."""
    found = {}
    for name in LANGUAGES:
        inside, outside, cited = {}, {}, {}
        for row, value in zip(rows, confidence):
            if language(row["question"]) != name:
                continue
            cited.setdefault(corpus_of(row), []).append((value, cites(row)))
            if row["in_scope"] and cites(row):  # declining a question whose answer is in hand breaks the promise
                inside.setdefault((row["group"], row["script"]), []).append(value)
            else:
                outside.setdefault("near" if row["kind"] == "near" else row["group"], []).append(value)
        lows = [np.quantile(values, IN_DECLINED) for values in inside.values() if len(values) >= MIN_GROUP]
        if not lows:  # no in-scope questions in this language (a corpus held out): the other language's bar
            continue
        uncertain_from = float(min(lows))
        answered_from = answered_bar(lambda candidate: all(
            np.mean(np.asarray(values) >= candidate) <= (NEAR_ANSWERED if key == "near" else OTHER_ANSWERED)
            for key, values in outside.items()
            if len(values) >= MIN_GROUP
        ) and all(precise(answers, candidate) for answers in cited.values()))
        found[name] = (round(min(uncertain_from, answered_from), 4), answered_from)
    for name in LANGUAGES:
        found.setdefault(name, next(iter(found.values())))
    return found


def cites(row: dict) -> bool:
    """Whether the question's first 3 passages cite its answer (rows collected before `cites` was: its first passage)."""
    return bool(row["in_scope"] and row.get("cites", row["right"]))


def corpus_of(row: dict) -> str:
    """The corpus a row's question was asked of."""
    return CORPUS_OF[row["group"]]


def calibrate(rows: list[dict]) -> Calibration:
    w = fit_logistic(features(rows), np.array([cites(row) for row in rows], dtype=float), class_weights(rows))
    calibration = Calibration(dict(zip(FEATURES, (round(float(v), 5) for v in w[1:]))), round(float(w[0]), 5), {})
    # Thresholds from the plain score: the bar that Calibration.confidence keeps detail evidence above is
    # the one being found, and below it only detail evidence (which in-scope questions hardly ever show) differs.
    confidence = np.array([calibration.score(evidence(row)) for row in rows])
    return replace(calibration, thresholds=thresholds(rows, confidence))


def decide(calibration: Calibration, row: dict) -> str:
    if not row["evidence"]:
        return "not_found"
    return calibration.outcome(calibration.confidence(evidence(row), row["question"]), row["question"])


def outcomes_by_group(rows: list[dict], outcomes: list[str]) -> dict[str, dict]:
    """Outcome shares per group, per group and script, and per out-of-scope kind (qa.evaluation.outcome_table)."""
    return outcome_table([
        ([row["group"], f"{row['group']} {row['script']}"] + ([f"{row['group']} {row['kind']}"] if row["kind"] else []), outcome)
        for row, outcome in zip(rows, outcomes)
    ])


def answered_correct(rows: list[dict], outcomes: list[str]) -> dict[str, dict]:
    """Per group: how many were answered, and the share of those whose first 3 passages cite the answer."""
    found: dict[str, list[bool]] = {}
    for row, outcome in zip(rows, outcomes):
        if outcome == "answered":
            found.setdefault(row["group"], []).append(cites(row))
    return {group: {"answered": len(values), "correct": round(float(np.mean(values)), 4)} for group, values in sorted(found.items())}


def reliability_table(rows: list[dict], confidence: list[float], bins: int = 10) -> list[dict]:
    """Predicted confidence against the share that cite their answer, in equal bins of confidence."""
    table = []
    for i in range(bins):
        inside = [(value, cites(row)) for row, value in zip(rows, confidence) if min(bins - 1, int(value * bins)) == i]
        table.append({"from": i / bins, "to": (i + 1) / bins, "n": len(inside),
                      "confidence": round(float(np.mean([v for v, _ in inside])), 3) if inside else None,
                      "correct": round(float(np.mean([c for _, c in inside])), 3) if inside else None})
    return table


def held_out_decisions(rows: list[dict], fold_of) -> tuple[list[str], list[float]]:
    """Each fitted row's outcome and confidence by a calibration fitted without its fold (`fold_of(row)`);
    "" and nan for rows never fitted on."""
    outcomes, confidence = [""] * len(rows), [float("nan")] * len(rows)
    fitted = [row for row in rows if row["fitted"]]
    for fold in sorted({fold_of(row) for row in fitted}):
        calibration = calibrate([row for row in fitted if fold_of(row) != fold])
        for i, row in enumerate(rows):
            if row["fitted"] and fold_of(row) == fold:
                outcomes[i] = decide(calibration, row)
                confidence[i] = calibration.confidence(evidence(row), row["question"]) if row["evidence"] else 0.0
    return outcomes, confidence


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/qa-fit"), help="indexes and corpora kept between runs")
    parser.add_argument("--no-write", action="store_true", help="print only; leave qa/decision/data/relevance.json as it is")
    parser.add_argument("--reuse", action="store_true", help="refit on the evidence the last run collected (--work/rows.json)")
    parser.add_argument("--groups", help="comma-separated groups to ask again; the others' evidence comes from the last run")
    parser.add_argument("--statutes-index", type=Path,
                        help="the statute library's index, built beforehand (default: --work/statutes-index, built here)")
    args = parser.parse_args()
    rows_file = args.work / "rows.json"
    if args.reuse:
        rows = json.loads(rows_file.read_text(encoding="utf-8"))
    elif args.groups:
        groups = {group.strip() for group in args.groups.split(",")}
        kept = [row for row in json.loads(rows_file.read_text(encoding="utf-8")) if row["group"] not in groups]
        rows = kept + collect(args.work, groups, args.statutes_index)
        rows_file.write_text(json.dumps(rows, ensure_ascii=False))
    else:
        rows = collect(args.work, statutes_index=args.statutes_index)
        rows_file.write_text(json.dumps(rows, ensure_ascii=False))
    fitted = [row for row in rows if row["fitted"]]
    held_out, held_confidence = held_out_decisions(rows, lambda row: row["fold"])
    # A whole corpus held out: fitted on the others, decided on it (does the placement carry to a corpus never seen?)
    by_corpus, _ = held_out_decisions(rows, corpus_of)
    final = calibrate(fitted)
    in_sample = [decide(final, row) for row in rows]
    unseen = [(row, outcome) for row, outcome in zip(rows, in_sample) if not row["fitted"]]
    fitted_at = [i for i, row in enumerate(rows) if row["fitted"]]
    report = {
        "held_out": outcomes_by_group(fitted, [held_out[i] for i in fitted_at]),
        "in_sample": outcomes_by_group(fitted, [in_sample[i] for i in fitted_at]),
        "corpus_held_out": outcomes_by_group(fitted, [by_corpus[i] for i in fitted_at]),
        "never_fitted": outcomes_by_group([row for row, _ in unseen], [o for _, o in unseen]),
        "answered_correct": {
            "held_out": answered_correct(fitted, [held_out[i] for i in fitted_at]),
            "in_sample": answered_correct(fitted, [in_sample[i] for i in fitted_at]),
            "corpus_held_out": answered_correct(fitted, [by_corpus[i] for i in fitted_at]),
        },
        "reliability_held_out": {
            corpus: reliability_table([rows[i] for i in fitted_at if corpus_of(rows[i]) == corpus],
                                      [held_confidence[i] for i in fitted_at if corpus_of(rows[i]) == corpus])
            for corpus in sorted({corpus_of(row) for row in fitted})
        },
    }
    columns = "answered uncertain not found"
    print(f"\n{'group':30} {'n':>5}   {'held out: ' + columns:>40}   {'in sample: ' + columns:>40}   {'corpus held out: ' + columns:>46}")
    for name, shares in report["held_out"].items():
        other, alone = report["in_sample"][name], report["corpus_held_out"][name]
        print(f"{name:30} {shares['n']:5d}   {shares['answered']:14.3f} {shares['uncertain']:9.3f} {shares['not_found']:9.3f}"
              f"       {other['answered']:14.3f} {other['uncertain']:9.3f} {other['not_found']:9.3f}"
              f"       {alone['answered']:14.3f} {alone['uncertain']:9.3f} {alone['not_found']:9.3f}")
    print("\nanswered questions whose first 3 passages cite the answer (held out / in sample / corpus held out):")
    for name in sorted({row["group"] for row in fitted}):
        shares = [report["answered_correct"][kind].get(name) for kind in ("held_out", "in_sample", "corpus_held_out")]
        print(f"{name:30} " + "   ".join(f"{s['correct']:.3f} of {s['answered']:4d}" if s else "    —      " for s in shares))
    print("\nreliability held out (confidence bin: n, mean confidence, share citing the answer):")
    for corpus, table in report["reliability_held_out"].items():
        print(f"  {corpus}: " + "  ".join(f"{b['from']:.1f}-{b['to']:.1f} {b['n']} {b['confidence']:.2f}/{b['correct']:.2f}"
                                         for b in table if b["n"]))
    print("\nnever fitted on (final calibration):")
    for name, shares in report["never_fitted"].items():
        print(f"{name:30} {shares['n']:5d}   answered {shares['answered']:.3f} uncertain {shares['uncertain']:.3f} not found {shares['not_found']:.3f}")
    print(f"\nfinal: {final.weights} bias {final.bias}; thresholds (uncertain from, answered from) {final.thresholds}")
    if not args.no_write:
        final = replace(final, fitted={"by": "scripts/fit_relevance.py", "groups": sorted({row["group"] for row in fitted}), **report})
        calibration_path().write_text(json.dumps(final.to_json(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {calibration_path()}")


if __name__ == "__main__":
    main()

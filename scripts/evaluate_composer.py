"""Evaluate written answers (qa/compose/): how well the citation check sorts sentences, and, with a language
model, what it writes.

    .venv/bin/python scripts/evaluate_composer.py --index /tmp/statutes-index ../shared/eval/statutes/stard_train.jsonl --fold 1/10
    QA_LLM_URL=http://127.0.0.1:8000/v1 .venv/bin/python scripts/evaluate_composer.py --index /tmp/statutes-index \
        ../shared/eval/statutes/stard_train.jsonl --fold 1/20 --compose

The check (no language model needed). Each question of the file (or of fold I/N) is asked of the index, and
sentences whose truth is known by construction are checked against its first five cards:

    own         the first sentence of card r, cited [r]                           should be supported
    clause      the longest clause (between commas) of that sentence, cited [r]   should be supported
    swapped     that sentence cited as another card s whose text lacks it         should not be
    spliced     the first half of that sentence's clauses joined to the second half of
                another card's first sentence, cited [r]: half of it is not in card r  should not be
    figure      that sentence with its first figure changed (n -> n + 7), cited [r]  should not be
                (cards whose first sentence states a figure)

It prints the share of each kind that the check supports, so both kinds of error are seen: a right sentence
marked (own, clause) and a wrong one passed (swapped, spliced, figure), at the check's own CLAUSE_COVERAGE and
at others (--clause-bars): CLAUSE_COVERAGE was chosen on fold 1/10 of stard_train.jsonl over the library;
report it on other folds and corpora.

--compose (QA_LLM_URL set): `qa eval --compose` on the same questions: the written answers' supported share,
citation precision (cites a relevant card) and speed (qa/evaluation.py composition_figures).
"""

import argparse
import json
import os
import re
import sys
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from qa.assistant import Assistant  # noqa: E402
from qa.compose.check import CLAUSE_COVERAGE, CitationChecker, figures  # noqa: E402
from qa.config import composer_settings_from_env, config_from_env  # noqa: E402
from qa.evaluation import COMPOSED_CARDS, evaluate_file, fold_of, parse_fold, read_questions  # noqa: E402
from qa.passages import split_sentences  # noqa: E402

KINDS = ("own", "clause", "swapped", "spliced", "figure")
MIN_CHARS = 8  # a first sentence shorter than this (a heading, an article's number) is not used


def first_sentence(text: str) -> str | None:
    for start, end in split_sentences(text):
        sentence = text[start:end].strip()
        if len(sentence) >= MIN_CHARS:
            return sentence
    return None


def clauses(sentence: str) -> list[str]:
    return [clause for clause in re.split(r"[，,：:；;]", sentence) if clause.strip()]


def changed_figure(sentence: str) -> str | None:
    """`sentence` with its first figure's written form replaced by another number (its value + 7), else None."""
    found = figures(sentence)
    if not found:
        return None
    value, written = next(iter(found.items()))
    return sentence.replace(written, f"{int(value) + 7}", 1)


def constructed(passages) -> list[tuple[str, str, list]]:
    """(kind, sentence with its citation, the cards) for one answer's first cards."""
    cards = passages[:COMPOSED_CARDS]
    made = []
    for card in cards:
        sentence = first_sentence(card.text)
        if sentence is None:
            continue
        bare = sentence.rstrip("。；;！!？?")
        made.append(("own", f"{bare}[{card.rank}]。", cards))
        clause = max(clauses(bare) or [bare], key=len)
        if len(clause) >= MIN_CHARS and clause != bare:
            made.append(("clause", f"{clause}[{card.rank}]。", cards))
        other = next((c for c in cards if c.rank != card.rank and bare not in c.text), None)
        if other is not None:
            made.append(("swapped", f"{bare}[{other.rank}]。", cards))
            theirs = first_sentence(other.text)
            mine, foreign = clauses(bare), clauses(theirs.rstrip("。；;！!？?")) if theirs else []
            if len(mine) >= 2 and len(foreign) >= 2:
                spliced = "，".join(mine[: len(mine) // 2] + foreign[len(foreign) // 2 :])
                made.append(("spliced", f"{spliced}[{card.rank}]。", cards))
        wrong = changed_figure(bare)
        if wrong is not None:
            made.append(("figure", f"{wrong}[{card.rank}]。", cards))
    return made


def check_figures(assistant: Assistant, questions) -> dict[str, list[tuple[bool, float]]]:
    checker = CitationChecker(assistant.embedder, lambda: assistant.keywords)
    supported = {kind: [] for kind in KINDS}
    for start in range(0, len(questions), 32):
        batch = questions[start : start + 32]
        for answer in assistant.ask_many([q.question for q in batch], COMPOSED_CARDS):
            made = constructed(answer.passages)
            if not made:
                continue
            # One check of all of an answer's sentences: its cards are embedded once. Each sentence ends in "。",
            # so the check splits them as they were made.
            results = checker.check("".join(sentence for _, sentence, _ in made), answer.passages[:COMPOSED_CARDS])
            if len(results) != len(made):
                results = [checker.check(sentence, cards)[0] for _, sentence, cards in made]
            for (kind, _, _), result in zip(made, results):
                if result.supported is not None:
                    # Passed every rule but the clauses' (None: failed another), and its weakest clause.
                    passed = result.reason in ("", "part_unsupported")
                    supported[kind].append((passed, result.weakest_clause))
        print(f"\r  checked the answers to {min(start + 32, len(questions))}/{len(questions)} questions", end="", file=sys.stderr)
    print(file=sys.stderr)
    return supported


def shares(found: list[tuple[bool, float]], clause_bar: float) -> float:
    """The share of `found` supported with the clause rule at `clause_bar`."""
    return sum(passed and weakest >= clause_bar for passed, weakest in found) / len(found) if found else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("questions", type=Path, help="a STARD .jsonl or a qa eval TSV of in-scope questions")
    parser.add_argument("--index", type=Path, required=True, help="the index to ask (built from the questions' corpus)")
    parser.add_argument("--fold", help="only the questions of fold I/N (as qa eval --fold)")
    parser.add_argument("--clause-bars", type=float, nargs="*", default=[0.0, 0.4, 0.6, 0.7],
                        help="also print the shares at these bars of a clause's coverage (to choose CLAUSE_COVERAGE on one fold)")
    parser.add_argument("--compose", action="store_true", help="also have the language model at QA_LLM_URL write the answers")
    args = parser.parse_args()
    config = config_from_env().with_overrides(index_dir=args.index)
    questions = [q for q in read_questions(args.questions) if q.in_scope and q.question]
    fold = parse_fold(args.fold) if args.fold else None
    if fold is not None:
        questions = [q for q in questions if fold_of(q.id, fold[1]) == fold[0]]
    assistant = Assistant(config)
    where = f"{args.questions.name}{f' fold {args.fold}' if args.fold else ''}, {len(questions)} questions, index {args.index}"
    print(f"The citation check on sentences built from the cards ({where}):")
    bars = sorted({CLAUSE_COVERAGE, *args.clause_bars})
    print(f"{'kind':10} {'n':>6} " + " ".join(f"{'clauses ' + format(bar, '.2f'):>13}" for bar in bars) + "   should be")
    for kind, found in check_figures(assistant, questions).items():
        row = " ".join(f"{shares(found, bar):13.3f}" for bar in bars)
        print(f"{kind:10} {len(found):6d} {row}   {'supported' if kind in ('own', 'clause') else 'not supported'}")
    print(f"(the share of each kind supported, by the clause bar; {CLAUSE_COVERAGE} is qa/compose/check.py's)")
    if args.compose:
        composing = composer_settings_from_env()
        if not composing.enabled:
            sys.exit("--compose needs QA_LLM_URL (an OpenAI-compatible API)")
        report = evaluate_file([args.questions], config, embedder=assistant.embedder, fold=fold, composing=replace(composing))
        print(f"\nWritten answers by {composing.llm_model or 'the endpoint'} at {composing.llm_url}:")
        print(json.dumps(report.composing, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()

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
    figure      that sentence with its first figure changed (n -> n + 7), cited [r]  should not be
                (cards whose first sentence states a figure)

It prints the share of each kind that the check supports, so both kinds of error are seen: a right sentence
marked (own, clause) and a wrong one passed (swapped, figure). The check's bars (qa/compose/check.py) were set
before this ran; no figure here was fitted on these questions.

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
from qa.compose.check import CitationChecker, figures  # noqa: E402
from qa.config import composer_settings_from_env, config_from_env  # noqa: E402
from qa.evaluation import COMPOSED_CARDS, evaluate_file, fold_of, parse_fold, read_questions  # noqa: E402
from qa.passages import split_sentences  # noqa: E402

KINDS = ("own", "clause", "swapped", "figure")
MIN_CHARS = 8  # a first sentence shorter than this (a heading, an article's number) is not used


def first_sentence(text: str) -> str | None:
    for start, end in split_sentences(text):
        sentence = text[start:end].strip()
        if len(sentence) >= MIN_CHARS:
            return sentence
    return None


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
        clause = max(re.split(r"[，,：:；;]", bare), key=len)
        if len(clause) >= MIN_CHARS and clause != bare:
            made.append(("clause", f"{clause}[{card.rank}]。", cards))
        other = next((c for c in cards if c.rank != card.rank and bare not in c.text), None)
        if other is not None:
            made.append(("swapped", f"{bare}[{other.rank}]。", cards))
        wrong = changed_figure(bare)
        if wrong is not None:
            made.append(("figure", f"{wrong}[{card.rank}]。", cards))
    return made


def check_figures(assistant: Assistant, questions) -> dict[str, tuple[int, float]]:
    checker = CitationChecker(assistant.embedder, lambda: assistant.keywords)
    supported = {kind: [] for kind in KINDS}
    for start in range(0, len(questions), 32):
        batch = questions[start : start + 32]
        for answer in assistant.ask_many([q.question for q in batch], COMPOSED_CARDS):
            for kind, sentence, cards in constructed(answer.passages):
                result = checker.check(sentence, cards)
                if result and result[0].supported is not None:
                    supported[kind].append(bool(result[0].supported))
        print(f"\r  checked the answers to {min(start + 32, len(questions))}/{len(questions)} questions", end="", file=sys.stderr)
    print(file=sys.stderr)
    return {kind: (len(found), sum(found) / len(found) if found else float("nan")) for kind, found in supported.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("questions", type=Path, help="a STARD .jsonl or a qa eval TSV of in-scope questions")
    parser.add_argument("--index", type=Path, required=True, help="the index to ask (built from the questions' corpus)")
    parser.add_argument("--fold", help="only the questions of fold I/N (as qa eval --fold)")
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
    print(f"{'kind':10} {'n':>6} {'supported':>10}   should be")
    for kind, (count, share) in check_figures(assistant, questions).items():
        print(f"{kind:10} {count:6d} {share:10.3f}   {'supported' if kind in ('own', 'clause') else 'not supported'}")
    if args.compose:
        composing = composer_settings_from_env()
        if not composing.enabled:
            sys.exit("--compose needs QA_LLM_URL (an OpenAI-compatible API)")
        report = evaluate_file([args.questions], config, embedder=assistant.embedder, fold=fold, composing=replace(composing))
        print(f"\nWritten answers by {composing.llm_model or 'the endpoint'} at {composing.llm_url}:")
        print(json.dumps(report.composing, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()

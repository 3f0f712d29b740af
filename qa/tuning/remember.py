"""`qa remember`: the library's labelled questions kept beside the index, to lift the passages that answered
them for new questions like them (qa/search/memory.py). No model is trained: it works at once, with any model.

The labelled files and the feedback log are read as `qa tune` reads them (qa/tuning/pairs.py: STARD .jsonl,
TSVs of question<TAB>SOURCE:START-END, thumbs-up passages); each question is encoded as the assistant reads a
question (Assistant.question_vectors) and remembered with its passages.

The weight is fitted on the same questions, held out by construction: split into FOLDS by id (`qa eval --fold`),
each fold is asked (RANKED passages, as `qa eval` asks) with a memory of the other folds only, under each weight of
WEIGHTS; the weight with the highest hit@1 + hit@5 + recall@10 + MRR@10 over all folds is kept. 0 (no lift) is tried first,
so a tie keeps it, and a memory that does not help is written with weight 0 and lifts nothing. The figures of
every weight are written with the memory.
"""

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from qa.config import Config
from qa.decision.verdict import model_identity
from qa.errors import TuneError
from qa.evaluation import RANKED, evaluate, fold_of
from qa.search.memory import MEMORY_FILE, NEIGHBOURS, TEMPERATURE, QuestionMemory, write_memory
from qa.tuning.negatives import ask_all
from qa.tuning.pairs import PassageFinder, check_labels, read_labels
from qa.tuning.report import HELD_OUT_METRICS

WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.8, 1.2, 2.0)  # fused scores run 0..1 (qa/search/fusion.py)
# The first card counts by itself as well: a lift puts other questions' answers first, and on the statute library
# the weight best for the first five (1.2) cost a fifth to a third of the questions whose first card was right
# (hit@1 0.384 -> 0.311 in the fit; 0.392 -> 0.254 on a fold it never saw). What people read first is not traded
# for the top five.
FITTED_ON = ("hit@1", *HELD_OUT_METRICS)
FOLDS = 5


def remember(config: Config, labelled: list[Path], feedback: Path | None = None, skip_problems: bool = False,
             say: Callable[[str], None] = lambda message: None, embedder=None) -> dict:
    """Remember the questions of `labelled` and `feedback` beside the index in `config.index_dir` with the weight
    fitted on them, write the memory (qa/search/memory.py) and return what memory.json holds. TuneError for
    problems in the inputs (as `qa tune`; `skip_problems` leaves those lines out) or no question to remember."""
    from qa.assistant import Assistant

    started = time.monotonic()
    assistant = Assistant(config, embedder)
    passages = assistant.index.passages
    labels = read_labels(list(labelled), feedback, PassageFinder(passages))
    check_labels(labels, skip_problems, say)
    questions = labels.questions
    if not questions:
        raise TuneError("no labelled question with a passage of this index to remember")
    say(f"reading the {len(questions)} labelled questions with {config.model}")
    vectors = np.concatenate([assistant.question_vectors([q.question for q in questions[start : start + 64]])
                              for start in range(0, len(questions), 64)])
    memory = QuestionMemory(vectors, tuple(np.array(sorted(q.positives), dtype=np.int64) for q in questions), 0.0)
    folds = np.array([fold_of(q.id, FOLDS) for q in questions])
    say(f"fitting the weight: each of {FOLDS} folds asked with a memory of the others, under {len(WEIGHTS)} weights")
    tried = []
    retriever = assistant.retriever
    others = {fold: memory.only(folds != fold) for fold in set(folds.tolist())}  # each fold's memory: the other folds
    try:
        for weight in WEIGHTS:
            answers = [None] * len(questions)
            for fold, kept in others.items():
                inside = np.flatnonzero(folds == fold)
                retriever.memory = replace(kept, weight=weight) if weight and len(kept) else None
                for i, answer in zip(inside, ask_all([questions[i] for i in inside], lambda texts: assistant.ask_many(texts, RANKED))):
                    answers[i] = answer
            metrics = evaluate([q.eval_question() for q in questions], answers, ranked=RANKED).metrics
            tried.append({"weight": weight, **{key: round(metrics[key], 4) for key in FITTED_ON}})
            say(f"weight {weight}: " + ", ".join(f"{key} {metrics[key]:.3f}" for key in FITTED_ON))
    finally:
        retriever.memory = None  # this assistant is not used again; the memory written is read by the next one
    best = max(tried, key=lambda row: sum(row[key] for key in FITTED_ON))  # the first of equals: 0 first
    facts = {
        "by": "qa remember", "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "labelled": [str(p) for p in labelled], "feedback": str(feedback) if feedback else None,
        "model": model_identity(assistant.embedder).to_json(),
        "weight": best["weight"], "neighbours": NEIGHBOURS, "temperature": TEMPERATURE,
        "fitted on": f"{len(questions)} questions, each fold of {FOLDS} asked without its own, {' + '.join(FITTED_ON)}",
        "tried": tried, "seconds": round(time.monotonic() - started, 1),
        "questions": [{"id": q.id, "question": q.question,
                       "passages": [[passages[row].source, passages[row].start, passages[row].end] for row in sorted(q.positives)]}
                      for q in questions],
    }
    write_memory(config.index_dir, facts, vectors)
    return facts


def table(facts: dict) -> list[str]:
    """The weights tried and their held-out figures, the chosen one marked."""
    lines = [f"{len(facts['questions'])} questions remembered; each fold of {FOLDS} asked with a memory of the others:",
             f"{'weight':>8} " + " ".join(f"{key:>10}" for key in FITTED_ON)]
    for row in facts["tried"]:
        mark = "  <- chosen" if row["weight"] == facts["weight"] else ""
        lines.append(f"{row['weight']:8.2f} " + " ".join(f"{row[key]:10.3f}" for key in FITTED_ON) + mark)
    if facts["weight"] == 0:
        lines.append(f"Remembering did not help these questions held out: {MEMORY_FILE} is written with weight 0 and lifts nothing.")
    return lines

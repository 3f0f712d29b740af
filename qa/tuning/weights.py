"""The fusion weights fitted with a tuned model on its training questions, never on the held-out fold.

A tuned encoder's dense evidence is stronger than the bundled model's, so the keyword share that suits the bundled
model holds it back: on the statute library, a questions' tune with the default weights (keyword 0.3, section 0.5)
found a relevant article in the first five for 64.6% of the held-out fold, and 70.0% with keyword 0.05 and
section 0.1 (README). So once the tuned index is built, the training questions are asked under each pair of
KEYWORD_WEIGHTS × SECTION_WEIGHTS, and the pair with the highest hit@5 + recall@10 + MRR@10 (the figures a tune is
judged by) is written into the tuned model's folder (qa/search/fusion.py WEIGHTS_FILE), where every Assistant
with that model takes it. The defaults are tried first, so a tie keeps them. The figures after the tune are
asked with the pair chosen: fitted on the training folds, reported on the fold nothing was fitted on.
"""

import json
import os
from collections.abc import Callable
from pathlib import Path

from qa.config import Config
from qa.evaluation import RANKED, evaluate
from qa.search.fusion import WEIGHTS_FILE
from qa.tuning.negatives import ask_all
from qa.tuning.pairs import LabelledQuestion
from qa.tuning.report import HELD_OUT_METRICS

KEYWORD_WEIGHTS = (Config.keyword_weight, 0.2, 0.1, 0.05)
SECTION_WEIGHTS = (Config.section_weight, 0.3, 0.1)


def fit_weights(config: Config, questions: list[LabelledQuestion], embedder=None,
                say: Callable[[str], None] = lambda message: None) -> dict:
    """The keyword and section weights under which `config`'s model and index rank `questions` best, with the
    figures of every pair tried ({"keyword_weight", "section_weight", "fitted on", "tried": [...]})."""
    from qa.assistant import Assistant

    tried = []
    for keyword in KEYWORD_WEIGHTS:
        for section in SECTION_WEIGHTS:
            assistant = Assistant(config.with_overrides(keyword_weight=keyword, section_weight=section), embedder)
            embedder = assistant.embedder  # one model for every pair
            answers = ask_all(questions, lambda texts: assistant.ask_many(texts, RANKED))
            metrics = evaluate([q.eval_question() for q in questions], answers, ranked=RANKED).metrics
            tried.append({"keyword_weight": keyword, "section_weight": section,
                          **{key: round(metrics[key], 4) for key in HELD_OUT_METRICS}})
            say(f"keyword {keyword}, section {section}: " + ", ".join(f"{key} {metrics[key]:.3f}" for key in HELD_OUT_METRICS))
    best = max(tried, key=lambda row: sum(row[key] for key in HELD_OUT_METRICS))  # the first of equals: defaults first
    return {"keyword_weight": best["keyword_weight"], "section_weight": best["section_weight"],
            "fitted on": f"{len(questions)} training questions, hit@5 + recall@10 + mrr@10", "tried": tried}


def write_weights(folder: Path, weights: dict) -> Path:
    """Write `weights` into the model folder as WEIGHTS_FILE, whole or not at all."""
    path = Path(folder) / WEIGHTS_FILE
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(weights, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    os.replace(partial, path)
    return path

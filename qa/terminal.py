"""What the `qa` command (and the chat page it starts) prints to the terminal and reads from it:
build progress and reports, answers as text, questions from standard input.

The one terminal display of a build's progress is `progress_bars`; `qa build` and `qa serve` both use it.
"""

import sys

import click

from qa.decision.outcomes import ANSWERED, NOT_FOUND, UNCERTAIN


def print_build_report(report) -> None:
    """A build's notes and unreadable files (stderr), then its one-line summary (stdout)."""
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
    for problem in report.problems:
        if problem.source in report.kept:
            click.echo(f"kept {problem.source} as indexed before; it cannot be read now: {problem.reason}", err=True)
        else:
            click.echo(f"skipped {problem.source}: {problem.reason}", err=True)
    for problem in report.page_problems:
        click.echo(f"skipped {problem.source} {problem.reason}", err=True)
    for line in ocr_lines(report.ocr):
        click.echo(line, err=True)
    changes = report.changes
    click.echo(
        f"Indexed {count(report.documents, 'document')} as {count(report.passages, 'passage')} in {report.seconds:.1f} s: "
        f"{len(changes.added)} added, {len(changes.changed)} changed, {len(changes.removed)} removed, "
        f"{count(len(changes.unchanged), 'unchanged file')}; {count(report.embedded, 'passage')} embedded, {report.reused} reused."
    )


def ocr_lines(summaries: dict) -> list[str]:
    """One line per file read by OCR: its pages, how many the engine read now, the mean confidence."""
    lines = []
    for source, summary in summaries.items():
        lines.append(
            f"OCR {source}: {page_ranges(summary.pages)} ({summary.recognised} recognised now, {summary.cached} from the OCR cache), "
            f"mean confidence {summary.confidence:.3f}"
        )
    return lines


def page_ranges(pages: list[int]) -> str:
    """'pages 1-3, 5' for [1, 2, 3, 5]; 'page 4' for [4]."""
    ranges: list[list[int]] = []
    for page in sorted(pages):
        if ranges and page == ranges[-1][1] + 1:
            ranges[-1][1] = page
        else:
            ranges.append([page, page])
    text = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in ranges)
    return f"page{'s' if len(pages) != 1 else ''} {text}"


def count(number: int, noun: str) -> str:
    """'1 passage', '2 passages'."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def read_stdin_questions() -> list[tuple[int, str]]:
    """The non-blank lines of standard input with their line numbers (for messages about one line)."""
    data = sys.stdin.buffer.read()
    text = data.decode("utf-8", errors="replace")
    if "\ufffd" in text and "\ufffd".encode() not in data:
        click.echo("warning: standard input is not valid UTF-8; undecodable bytes were replaced", err=True)
    return [(number, line) for number, line in enumerate(text.split("\n"), start=1) if line.strip()]


# The first line of an answer, by its outcome (qa/answer.py).
OUTCOME_LINES = {
    ANSWERED: "",
    UNCERTAIN: "可能相关，请核对原文 (possibly relevant: check the source text)",
    NOT_FOUND: "没有找到相关内容 (nothing relevant found). Closest passages, weak matches:",
}


def print_answer(answer) -> None:
    """The answer as text; passages scoring under the answer's `uncertain_from` are marked weak, as on the page."""
    if OUTCOME_LINES[answer.outcome]:
        click.echo(OUTCOME_LINES[answer.outcome])
    if answer.outcome == UNCERTAIN and answer.lacks_figure:
        click.echo("note: the question asks for a figure; the passages are on the topic but state none (the source may not say)")
    for note in answer.notes:
        click.echo(f"note: {note}")
    for passage in answer.passages:
        weak = "  (weak match)" if answer.outcome == NOT_FOUND or passage.score < answer.uncertain_from else ""
        page = f", page {passage.page}" if passage.page is not None else ""
        if passage.label:  # a unit of the document's structure: cited as people cite it, the file below
            date = f" ({passage.date})" if passage.date else ""
            click.echo(f"[{passage.rank}] {passage.score:.0%}{weak}  {passage.citation}{date}")
            click.echo(f"    {passage.source}{page}, characters {passage.start}–{passage.end}")
        else:
            click.echo(
                f"[{passage.rank}] {passage.score:.0%}{weak}  {passage.source}{page} · {passage.section} "
                f"(characters {passage.start}–{passage.end})"
            )
        click.echo(f"    {passage.text}")
        if passage.asked_before:
            click.echo(f"    asked before: {passage.asked_before}")


def print_composing(drafts, english: bool) -> None:
    """A written answer as it comes (qa.compose.Composer.stream), then each sentence its check did not support,
    with the reason; or the one line that says why there is none."""
    from qa.compose.check import unsupported_mark

    shown = ""
    for composition in drafts:
        if composition.note:
            click.echo(f"note: no written answer: {composition.note}")
            return
        if not composition.text.startswith(shown):  # the model's text changed (a <think> block closed)
            click.echo()
            shown = ""
        click.echo(composition.text[len(shown):], nl=False)
        shown = composition.text
        if composition.done:
            click.echo()
            checked = [sentence for sentence in composition.sentences if sentence.supported is not None]
            supported = sum(bool(sentence.supported) for sentence in checked)
            click.echo(f"({composition.model}, {composition.seconds:.1f} s; {supported} of {len(checked)} sentences found in the passages they cite)")
            for sentence in composition.unsupported:
                click.echo(f"  ⚠ {unsupported_mark(sentence, english)}: {sentence.text}")
            click.echo()


def say(message: str) -> None:
    """A line about what is happening, on stderr (stdout is for results)."""
    click.echo(message, err=True)


def progress_bars():
    """A progress callback: tqdm bars (rate, time left) for every stage that counts something (files read,
    passages embedded, tokenized and read by the second encoder, background questions, vectors indexed),
    lines for the rest."""
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}
    counted = {"reading": ("reading", "file"), "cache": ("converting the embedding cache", "vector"),
               "embedding": ("embedding", "passage"),
               "keywords": ("keyword index", "passage"), "second": ("second encoder", "passage"),
               "background": ("background", "question"), "vectors": ("vector index", "vector")}

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "passages":
            click.echo(f"{total} passages: {done} reused from the embedding cache, {total - done} to embed", err=True)
        elif stage == "model" and done == 0:
            click.echo("loading the embedding model…", err=True)
        elif stage == "writing" and done == 0:
            click.echo("writing and checking the new index…", err=True)
        elif stage == "ocr" and total > 0:
            if "ocr" not in bars:  # one bar per file with pages to OCR
                bars["ocr"] = tqdm(total=total, desc="OCR", unit="page", file=sys.stderr, leave=False)
            bars["ocr"].update(done - bars["ocr"].n)
            if done >= total:
                bars.pop("ocr").close()
        elif stage in counted and total > 0:
            if stage not in bars:
                description, unit = counted[stage]
                bars[stage] = tqdm(total=total, desc=description, unit=unit, file=sys.stderr)
            bar = bars[stage]
            bar.total = total
            bar.update(done - bar.n)
            if done >= total:
                bars.pop(stage).close()

    return progress


def print_tune_step(step) -> None:
    """A line per training step of `qa tune` (qa/tuning/training.py StepProgress): the step, its loss, the time left."""
    left = int(round(step.seconds_left))
    clock = f"{left // 3600} h {left % 3600 // 60:02d} min" if left >= 3600 else f"{left // 60} min {left % 60:02d} s"
    click.echo(f"training: step {step.step}/{step.steps}, loss {step.loss:.3f}, {clock} left", err=True)

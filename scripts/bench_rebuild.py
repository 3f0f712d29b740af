"""Benchmark: full build vs plain `encode`, and the rebuild after editing one file.

Corpus: the first 256 paragraphs of the CMRC 2018 trial set (../shared/eval/cmrc2018_trial.json, or
--trial), one .txt file each, in a temporary folder. Prints, in one run:

  - process start-up (importing qa) and model loading, measured apart;
  - in process (--rounds, 2 by default; 0 leaves this part out): full build (empty embedding cache)
    against plain sentence-transformers `encode` of the same passage texts with the same model,
    batch size and prompt: the build's throughput as a share of plain encode's (target >= 90%); then
    rebuilds after no change and after editing one file with the model already loaded;
  - as `qa build` processes, start-up and everything included, what a user waits for: the full build
    (empty embedding cache), a rebuild after no change and a rebuild after editing one file, the
    last as a share of the first (target <= 10%). With --compare, other checkouts' `qa` (a git
    worktree of an earlier commit, run with the same Python) build the same corpus in turns with
    this one's, each into its own index folder:

        git worktree add /tmp/before HEAD~3
        .venv/bin/python scripts/bench_rebuild.py --rounds 0 --compare /tmp/before

Each in-process round runs plain encode and a full build back to back; the best of the rounds is
reported for both, because other processes on a shared machine only ever make a run slower.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STARTED = time.perf_counter()
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # threads sleep while waiting, as the qa command sets (qa/cli.py)

from qa.config import Config  # noqa: E402
from qa.documents.corpus import read_corpus  # noqa: E402
from qa.embeddings.model import Embedder  # noqa: E402
from qa.indexing.pipeline import build_index  # noqa: E402
from qa.passages import make_passages  # noqa: E402

IMPORTED = time.perf_counter()
PROJECT = Path(__file__).resolve().parents[1]
TRIAL = PROJECT.parent / "shared" / "eval" / "cmrc2018_trial.json"
# The `qa` command of whichever checkout PYTHONPATH names first (sys.argv[0] as the installed script sets it).
QA_COMMAND = "import sys; sys.argv[0] = 'qa'; from qa.cli import main; main()"


def write_corpus(trial: Path, folder: Path, count: int) -> list[Path]:
    data = json.loads(trial.read_text(encoding="utf-8"))["data"]
    paragraphs = [(p["id"], p["context"]) for article in data for p in article["paragraphs"]][:count]
    folder.mkdir(parents=True)
    paths = []
    for pid, context in paragraphs:
        path = folder / f"{pid}.txt"
        path.write_text(context + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def plain_encode(embedder: Embedder, texts: list[str], batch_size: int) -> float:
    started = time.perf_counter()
    embedder.model.encode(
        texts, prompt_name="passage", batch_size=batch_size, normalize_embeddings=True,
        convert_to_numpy=True, show_progress_bar=False,
    )
    return time.perf_counter() - started


def timed_build(config: Config, embedder: Embedder):
    """(seconds, report, seconds spent inside the model's encode during the build)."""
    model = embedder.model
    inside = [0.0]

    def encode(*args, **kwargs):
        started = time.perf_counter()
        try:
            return type(model).encode(model, *args, **kwargs)
        finally:
            inside[0] += time.perf_counter() - started

    model.encode = encode  # an instance attribute: only this process's benchmark sees it
    try:
        started = time.perf_counter()
        report = build_index(config, embedder)
        seconds = time.perf_counter() - started
    finally:
        del model.encode
    return seconds, report, inside[0]


def cli_build(checkout: Path, corpus: Path, index: Path) -> tuple[float, str]:
    """Run `qa build` of `checkout` as its own process; (wall seconds, its summary line)."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", QA_COMMAND, "build", "--corpus", str(corpus), "--index", str(index)],
        capture_output=True, text=True, cwd=index.parent,
        env=dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(checkout)),
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"qa build of {checkout} failed:\n{result.stderr}")
    return seconds, result.stdout.strip().splitlines()[-1]


def edit(path: Path, old: str, new: str) -> None:
    """Change the first `old` in the file to `new` (one passage's text changes)."""
    text = path.read_text(encoding="utf-8")
    if old not in text:
        raise SystemExit(f"{path} holds no {old!r} to edit")
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def in_process(args, work: Path, corpus: Path, paths: list[Path], texts: list[str]) -> None:
    base = Config(corpus_dir=corpus, index_dir=work / "index")
    embedder = Embedder(base.model, device=base.device, batch_size=base.batch_size)
    loading = time.perf_counter()
    embedder.model
    print(f"model loading: {time.perf_counter() - loading:.2f} s  (not counted below)")
    plain_encode(embedder, texts[:64], base.batch_size)  # warm-up: first calls allocate

    plain_times, build_times, overheads = [], [], []
    for round_number in range(args.rounds):
        plain_times.append(plain_encode(embedder, texts, base.batch_size))
        config = base.with_overrides(index_dir=work / f"index-{round_number}")
        seconds, report, inside = timed_build(config, embedder)
        if (report.embedded, report.reused) != (len(set(texts)), 0):
            raise SystemExit(f"a full build embedded {report.embedded} and reused {report.reused} passages")
        build_times.append(seconds)
        overheads.append((seconds - inside) / seconds)
        print(
            f"round {round_number + 1}: plain encode {plain_times[-1]:.2f} s, full build {seconds:.2f} s, "
            f"of which {inside:.2f} s inside the model's encode "
            f"(stages: {', '.join(f'{k} {v:.2f} s' for k, v in report.seconds_by_stage.items())})"
        )
    plain, full = min(plain_times), min(build_times)
    print(
        f"full build: {full:.2f} s = {len(texts) / full:.1f} passages/s; plain encode {plain:.2f} s = "
        f"{len(texts) / plain:.1f} passages/s; build throughput = {plain / full:.1%} of plain encode (target >= 90%)"
    )
    # Immune to the machine's load changing between runs: measured within each build.
    print(f"time the build spends outside the model's encode: {min(overheads):.1%} to {max(overheads):.1%} of the build")

    config = base.with_overrides(index_dir=work / f"index-{args.rounds - 1}")
    seconds, report, _ = timed_build(config, embedder)
    print(f"rebuild, no change (in process): {seconds:.3f} s = {seconds / full:.2%} of the full build; "
          f"{report.embedded} embedded, {report.reused} reused")
    edited = paths[len(paths) // 2]
    edit(edited, "。", "。另外，")
    seconds, report, _ = timed_build(config, embedder)
    print(f"rebuild after editing {edited.name} (in process, model loaded): {seconds:.3f} s = "
          f"{seconds / full:.2%} of the full build; {report.embedded} embedded, {report.reused} reused; "
          f"stages: {', '.join(f'{k} {v:.3f} s' for k, v in report.seconds_by_stage.items())}")
    edit(edited, "。另外，", "。")  # as it was, for the processes below


def processes(args, work: Path, corpus: Path, paths: list[Path]) -> None:
    """`qa build` as a user runs it, for this checkout and every --compare one, in turns."""
    checkouts = [PROJECT, *args.compare]
    names = {checkout: "this checkout" if checkout == PROJECT else str(checkout) for checkout in checkouts}
    indexes = {checkout: work / f"process-index-{n}" for n, checkout in enumerate(checkouts)}
    seconds: dict[Path, dict[str, float]] = {checkout: {} for checkout in checkouts}
    edited = paths[len(paths) // 3]
    steps = [("full build", None), ("no change", None), ("one file edited", ("。", "。此外，"))]
    for step, change in steps:
        if change:
            edit(edited, *change)
            print(f"edited {edited.name}: the first 。 is now 。此外，")
        for checkout in checkouts:
            took, summary = cli_build(checkout, corpus, indexes[checkout])
            seconds[checkout][step] = took
            print(f"`qa build`, {step}, {names[checkout]}: {took:.2f} s  "
                  f"(load average {os.getloadavg()[0]:.1f})\n    {summary}", flush=True)
    print("\nsummary, whole `qa build` processes (start-up, model loading and writing included):")
    for checkout in checkouts:
        took = seconds[checkout]
        print(f"  {names[checkout]}: full build {took['full build']:.1f} s, no change {took['no change']:.1f} s "
              f"({took['no change'] / took['full build']:.1%}), one file edited {took['one file edited']:.1f} s "
              f"= {took['one file edited'] / took['full build']:.1%} of the full build (target <= 10%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2, help="in-process rounds of plain encode and full build; 0: none")
    parser.add_argument("--trial", type=Path, default=TRIAL, help=f"the CMRC 2018 trial file [{TRIAL}]")
    parser.add_argument("--compare", type=Path, nargs="*", default=[], metavar="CHECKOUT",
                        help="other checkouts whose `qa build` runs in turns with this one's")
    args = parser.parse_args()
    if not args.trial.is_file():
        raise SystemExit(
            f"{args.trial} is not there: this benchmark builds the paragraphs of the CMRC 2018 trial set. "
            "Put the shared data beside the project (../shared/eval/cmrc2018_trial.json) or pass --trial FILE."
        )
    for checkout in args.compare:
        if not (checkout / "qa" / "cli.py").is_file():
            raise SystemExit(f"{checkout} is not a checkout of this project (no qa/cli.py)")

    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    work = Path(tempfile.mkdtemp(prefix="bench-rebuild-"))
    try:
        corpus = work / "corpus"
        paths = write_corpus(args.trial, corpus, args.docs)
        documents, _ = read_corpus(corpus)
        texts = [p.embedding_text() for p in make_passages(documents, Config().max_passage_chars)]
        print(f"corpus: {len(paths)} files, {len(texts)} passages, {sum(map(len, texts)) / len(texts):.0f} characters each on average")
        print(f"process start-up (import qa): {IMPORTED - STARTED:.2f} s")
        if args.rounds > 0:
            in_process(args, work, corpus, paths, texts)
        processes(args, work, corpus, paths)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

"""Benchmark: full build vs plain `encode`, and the rebuild after editing one file.

Corpus: the 256 paragraphs of ../shared/eval/cmrc2018_trial.json, one .txt file each, in a
temporary folder. Prints, in one run:

  - process start-up (importing qa) and model loading, measured apart;
  - full build (empty embedding cache) against plain sentence-transformers `encode` of the same
    passage texts with the same model, batch size and prompt, in the same process: the build's
    throughput as a share of plain encode's (target >= 90%);
  - rebuild after editing one file, and after no change, as a share of the full build's time
    (target <= 5%), in process with the model already loaded, and end to end as `qa build`
    processes (start-up and, for the edit, model loading included).

Usage: .venv/bin/python scripts/bench_rebuild.py [--docs 256] [--rounds 2]
Each round runs plain encode and a full build back to back; the best of the rounds is reported
for both, because other processes on a shared machine only ever make a run slower.
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

from qa.build import build_index  # noqa: E402
from qa.config import Config  # noqa: E402
from qa.corpus import read_corpus  # noqa: E402
from qa.embeddings import Embedder  # noqa: E402
from qa.passages import make_passages  # noqa: E402

IMPORTED = time.perf_counter()
PROJECT = Path(__file__).resolve().parents[1]
TRIAL = PROJECT.parent / "shared" / "eval" / "cmrc2018_trial.json"


def write_corpus(folder: Path, count: int) -> list[Path]:
    data = json.loads(TRIAL.read_text(encoding="utf-8"))["data"]
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


def cli_build(config: Config) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(
        [str(Path(sys.executable).parent / "qa"), "build", "--corpus", str(config.corpus_dir), "--index", str(config.index_dir)],
        capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"qa build failed:\n{result.stderr}")
    return seconds, result.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-rebuild-"))
    try:
        corpus = work / "corpus"
        paths = write_corpus(corpus, args.docs)
        base = Config(corpus_dir=corpus, index_dir=work / "index")
        documents, _ = read_corpus(corpus)
        texts = [p.embedding_text() for p in make_passages(documents, base.max_passage_chars)]
        print(f"corpus: {len(paths)} files, {len(texts)} passages, {sum(map(len, texts)) / len(texts):.0f} characters each on average")
        print(f"process start-up (import qa): {IMPORTED - STARTED:.2f} s")

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
            assert report.embedded == len(set(texts)) and report.reused == 0
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
        edited.write_text(edited.read_text(encoding="utf-8").replace("。", "。另外，", 1), encoding="utf-8")
        seconds, report, _ = timed_build(config, embedder)
        print(f"rebuild after editing {edited.name} (in process, model loaded): {seconds:.3f} s = "
              f"{seconds / full:.2%} of the full build (target <= 5%); {report.embedded} embedded, {report.reused} reused; "
              f"stages: {', '.join(f'{k} {v:.3f} s' for k, v in report.seconds_by_stage.items())}")

        seconds, output = cli_build(config)
        print(f"`qa build`, no change, whole process: {seconds:.2f} s (start-up included; the model is not loaded)")
        edited.write_text(edited.read_text(encoding="utf-8").replace("另外，", "此外，", 1), encoding="utf-8")
        seconds, output = cli_build(config)
        print(f"`qa build` after editing one file, whole process: {seconds:.2f} s (start-up and model loading included)")
        print(f"  {output}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

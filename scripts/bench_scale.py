"""Benchmark: scale as a user feels it, on a synthetic library of ~90,000 passages (issue 22, part 5).

The corpus: --documents Markdown files (1,500 by default, as many as the statute library holds), each
a title and numbered sections (## 第N条 …) of sentences drawn, seeded, from the CMRC 2018 trial and
DRCD dev paragraphs (../shared/eval), about --passages passages in all. Its vectors are synthetic
(random unit vectors, e5's and the second encoder's) put into the embedding cache before the build,
so the build runs every stage as `qa build` does (reading, keyword tokens, the HNSW index, the
decision's background, writing and checking) without hours of encoding. Prints, for each checkout:

  - the full build (vectors from the cache): seconds by stage, as its progress reports them, and the
    memory peak; the progress stages it reported;
  - the embedding cache's size (bytes per passage, and against the vectors it holds) and the index's;
  - loading: `qa status` and a one-shot `qa ask` as processes (start-up included), and in process
    the index loaded by the assistant, its memory, the first question and the next ten (p50);
  - the rebuild after editing one file, in process (as the page's rebuild) and as a `qa build` process.

With --compare, other checkouts (a git worktree of an earlier commit, run with the same Python) are
measured on the same corpus in the same run, each in its own folder:

    git worktree add /tmp/old HEAD~3
    .venv/bin/python scripts/bench_scale.py --compare /tmp/old

Each measurement runs in a fresh process (PYTHONPATH the checkout), so one checkout's modules and
memory never reach another's figures.
"""

import argparse
import inspect
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
EVAL = PROJECT.parent / "shared" / "eval"
QUESTIONS = ["合同解除后违约金如何计算？", "哪些情形下可以申请行政复议？", "The capital of the province?",
             "城市规划由哪个部门负责？", "职工工伤保险费由谁缴纳？", "历史上第一次世界大战何时开始？",
             "公司股东有哪些权利？", "如何申请专利？", "环境保护的基本原则是什么？", "哪一年建成的？",
             "这条河流经哪些城市？"]


# --- the corpus (this checkout only) -----------------------------------------------------------


def sentences() -> list[str]:
    """Every sentence of the CMRC trial and DRCD dev paragraphs (ending in 。！？, at most 200 characters)."""
    found = []
    for name in ("cmrc2018_trial.json", "drcd_dev.json"):
        data = json.loads((EVAL / name).read_text(encoding="utf-8"))["data"]
        for article in data:
            for paragraph in article["paragraphs"]:
                found += [s for s in re.findall(r"[^。！？\n]+[。！？]", paragraph["context"]) if 4 <= len(s) <= 200]
    return found


def write_corpus(folder: Path, documents: int, passages: int, seed: int = 22) -> None:
    """`documents` Markdown files of about `passages` passages of up to 120 characters in all."""
    pool = sentences()
    draw = random.Random(seed)
    folder.mkdir(parents=True)
    chars_per_document = passages * 73 // documents  # passages hold ~73 characters (120 at most)
    for number in range(documents):
        lines = [f"# 第{number + 1}号文件：{draw.choice(pool)[:12]}", ""]
        written, section = 0, 0
        while written < chars_per_document:
            section += 1
            lines += [f"## 第{section}条 {draw.choice(pool)[:8]}", ""]
            body = "".join(draw.choice(pool) for _ in range(draw.randint(1, 4)))
            lines += [body, ""]
            written += len(body)
        (folder / f"{number:04d}-文件.md").write_text("\n".join(lines), encoding="utf-8")


# --- phases, each in a fresh process of the checkout measured ------------------------------------


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase_fill(work: Path) -> dict:
    """Put a synthetic vector of every passage (e5's, the second encoder's) into the embedding cache."""
    import numpy as np

    from qa.config import Config
    from qa.documents.corpus import read_corpus
    from qa.embeddings.cache import CACHE_FILE, EmbeddingCache
    from qa.embeddings.model import Embedder
    from qa.embeddings.second_encoder import DIMENSION, SecondEncoder
    from qa.passages import make_passages

    config = Config(corpus_dir=work / "corpus", index_dir=work / "index")
    started = time.perf_counter()
    documents, _ = read_corpus(config.corpus_dir)
    texts = list(dict.fromkeys(p.embedding_text() for p in make_passages(documents, config.max_passage_chars)))
    embedder = Embedder.from_config(config)
    rng = np.random.default_rng(2024)
    # As a build opens it (the second encoder's vectors in float16 where the cache keeps them so).
    float16 = {"float16": [SecondEncoder.name]} if "float16" in inspect.signature(EmbeddingCache).parameters else {}
    with EmbeddingCache(config.index_dir / CACHE_FILE, embedder.cache_name, **float16) as cache:
        for model, dimension in ((embedder.cache_name, 384), (SecondEncoder.name, DIMENSION)):
            for start in range(0, len(texts), 8192):
                chunk = texts[start : start + 8192]
                vectors = rng.standard_normal((len(chunk), dimension)).astype(np.float32)
                vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
                cache.put(chunk, vectors, model=model)
    return {"texts": len(texts), "seconds": time.perf_counter() - started}


def phase_build(work: Path) -> dict:
    """Build (or rebuild) in process, as the page does: seconds by stage from the progress it reports."""
    from qa.config import Config
    from qa.embeddings.model import Embedder
    from qa.indexing.pipeline import build_index

    config = Config(corpus_dir=work / "corpus", index_dir=work / "index")
    calls: list[tuple[float, str, int, int]] = []
    started = time.perf_counter()

    def progress(stage, done, total, *more, **details):
        calls.append((time.perf_counter() - started, stage, done, total))

    report = build_index(config, Embedder.from_config(config), progress)
    seconds = time.perf_counter() - started
    # The time between two progress calls counts for the stage of the later one (the work it reports);
    # the writing steps apart: "writing 1/6" is the time until step 1 of 6 was reported.
    stages: dict[str, float] = {}
    last = 0.0
    for at, stage, done, total in [*calls, (seconds, "finishing", 0, 0)]:
        name = f"{stage} {done}/{total}" if stage == "writing" and done else stage
        stages[name] = stages.get(name, 0.0) + at - last
        last = at
    totals = {stage: max((total for _, s, _, total in calls if s == stage), default=0) for stage in stages}
    return {"seconds": seconds, "passages": report.passages, "embedded": report.embedded, "stages": stages,
            "totals": totals, "progress_calls": len(calls), "peak_mb": peak_mb(),
            "report_stages": report.seconds_by_stage}


def phase_load(work: Path) -> dict:
    """The assistant's load, its memory, the first question and ten more, in process."""
    import statistics

    started = time.perf_counter()
    from qa.assistant import Assistant
    from qa.config import Config

    imported = time.perf_counter() - started
    before = peak_mb()
    assistant = Assistant(Config(corpus_dir=work / "corpus", index_dir=work / "index"))
    started = time.perf_counter()
    assistant.index  # noqa: B018  (loads the index, the retriever and the background)
    load = time.perf_counter() - started
    loaded_mb = peak_mb()
    started = time.perf_counter()
    assistant.ask(QUESTIONS[0])
    first = time.perf_counter() - started
    times = []
    for question in QUESTIONS[1:]:
        started = time.perf_counter()
        assistant.ask(question)
        times.append(time.perf_counter() - started)
    return {"import_seconds": imported, "load_seconds": load, "peak_mb_before_load": before, "peak_mb_loaded": loaded_mb,
            "first_question_seconds": first, "next_p50_seconds": statistics.median(times), "peak_mb": peak_mb()}


def run_phase(checkout: Path, phase: str, work: Path) -> dict:
    output = subprocess.run(
        [sys.executable, __file__, "--phase", phase, "--work", str(work)], env=checkout_env(checkout),
        capture_output=True, text=True, check=False,
    )
    if output.returncode != 0:
        raise SystemExit(f"{phase} in {checkout} failed:\n{output.stderr[-4000:]}")
    return json.loads(output.stdout.strip().splitlines()[-1])


def checkout_env(checkout: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(checkout), "HF_HUB_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE"}


def timed_qa_with_memory(checkout: Path, work: Path, *arguments: str) -> dict:
    """`timed_qa`, with the process's memory peak read from its resource usage (ru_maxrss of the child)."""
    code = ("import resource, subprocess, sys, time, json; started = time.perf_counter(); "
            "r = subprocess.run(sys.argv[1:], capture_output=True); "
            "print(json.dumps({'seconds': time.perf_counter() - started, 'rc': r.returncode, "
            "'peak_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, "
            "'stderr': r.stderr.decode(errors='replace')[-2000:], 'stdout': r.stdout.decode(errors='replace')[-2000:]}))")
    command = [sys.executable, "-c", code, sys.executable, "-c",
               "import sys; sys.argv[0] = 'qa'; from qa.cli import main; main()", *arguments,
               *(["--corpus", str(work / "corpus")] if arguments[0] != "ask" else []), "--index", str(work / "index")]
    # In the checkout's folder: `python -c` puts the working folder before PYTHONPATH on the module path.
    output = subprocess.run(command, env=checkout_env(checkout), cwd=checkout, capture_output=True, text=True, check=True)
    result = json.loads(output.stdout.strip().splitlines()[-1])
    if result["rc"] not in ((0, 2) if arguments[0] == "status" else (0,)):
        raise SystemExit(f"qa {' '.join(arguments)} in {checkout} failed:\n{result['stderr']}")
    return result


def edit_one_file(work: Path, round_: int) -> str:
    """Append a sentence to one document (a new passage at its end); returns its name."""
    path = sorted((work / "corpus").iterdir())[len(list((work / "corpus").iterdir())) // 2]
    with path.open("a", encoding="utf-8") as file:
        file.write(f"\n## 第{900 + round_}条 修订\n\n本条为第{round_ + 1}次修订所加，自公布之日起施行。\n")
    return path.name


def sizes(work: Path) -> dict:
    from_cache = work / "index" / "embedding-cache.sqlite"
    current = work / "index" / "current"
    files = {path.name: path.stat().st_size for path in current.resolve().iterdir()}
    return {"cache_bytes": from_cache.stat().st_size, "index_bytes": sum(files.values()), "index_files": files}


def cache_contents(work: Path) -> dict:
    """Rows and the bytes of vectors the cache holds, by table (read with sqlite3, whatever the cache's format)."""
    import sqlite3

    connection = sqlite3.connect(work / "index" / "embedding-cache.sqlite")
    tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    held = {}
    for table in tables:
        columns = [row[1] for row in connection.execute(f"PRAGMA table_info({table})")]
        blob = next((c for c in ("vector", "vectors", "tokens") if c in columns), None)
        if blob is None:
            continue
        rows, length = connection.execute(f"SELECT count(*), coalesce(sum(length(CAST({blob} AS BLOB))), 0) FROM {table}").fetchone()
        held[table] = {"rows": rows, "bytes": length}
    connection.close()
    return held


def measure(checkout: Path, template: Path, work: Path, edits: int) -> dict:
    """Every figure of one checkout, in its own folder `work`."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copytree(template, work / "corpus")
    label = checkout.name
    figures = {"checkout": str(checkout)}
    figures["fill"] = run_phase(checkout, "fill", work)
    print(f"[{label}] cache filled with synthetic vectors of {figures['fill']['texts']:,} texts "
          f"in {figures['fill']['seconds']:.0f} s", flush=True)
    figures["build"] = build = run_phase(checkout, "build", work)
    print(f"[{label}] full build (vectors cached): {build['seconds']:.1f} s, {build['passages']:,} passages, "
          f"peak {build['peak_mb']:,.0f} MB, {build['progress_calls']} progress calls", flush=True)
    for stage, seconds in build["stages"].items():
        print(f"[{label}]     {stage:12} {seconds:7.1f} s" + (f"  (total {build['totals'][stage]:,})" if build["totals"][stage] else ""))
    figures["sizes"] = size = sizes(work)
    figures["cache"] = held = cache_contents(work)
    passages = build["passages"]
    print(f"[{label}] embedding cache {size['cache_bytes'] / 2**20:,.1f} MB = {size['cache_bytes'] / passages:,.0f} "
          f"bytes a passage; holds {held}", flush=True)
    print(f"[{label}] index {size['index_bytes'] / 2**20:,.1f} MB: "
          + ", ".join(f"{name} {bytes_ / 2**20:,.1f} MB" for name, bytes_ in sorted(size["index_files"].items())), flush=True)
    figures["status"] = timed_qa_with_memory(checkout, work, "status")
    figures["ask"] = timed_qa_with_memory(checkout, work, "ask", QUESTIONS[0])
    print(f"[{label}] qa status {figures['status']['seconds']:.1f} s (peak {figures['status']['peak_mb']:,.0f} MB); "
          f"qa ask (one shot) {figures['ask']['seconds']:.1f} s (peak {figures['ask']['peak_mb']:,.0f} MB)", flush=True)
    figures["load"] = load = run_phase(checkout, "load", work)
    print(f"[{label}] in process: import {load['import_seconds']:.1f} s, index loaded in {load['load_seconds']:.2f} s "
          f"(peak {load['peak_mb_before_load']:,.0f} -> {load['peak_mb_loaded']:,.0f} MB), first question "
          f"{load['first_question_seconds']:.2f} s, next p50 {load['next_p50_seconds'] * 1000:.0f} ms, peak {load['peak_mb']:,.0f} MB",
          flush=True)
    figures["rebuilds"] = []
    for round_ in range(edits):
        name = edit_one_file(work, round_)
        if round_ % 2 == 0:
            rebuild = run_phase(checkout, "build", work)
            rebuild["how"] = "in process"
            print(f"[{label}] one-file rebuild ({name}), in process: {rebuild['seconds']:.1f} s, embedded "
                  f"{rebuild['embedded']}, peak {rebuild['peak_mb']:,.0f} MB; "
                  + ", ".join(f"{s} {t:.1f} s" for s, t in rebuild["stages"].items()), flush=True)
        else:
            rebuild = timed_qa_with_memory(checkout, work, "build")
            rebuild["how"] = "qa build"
            print(f"[{label}] one-file rebuild ({name}), `qa build` process: {rebuild['seconds']:.1f} s, "
                  f"peak {rebuild['peak_mb']:,.0f} MB", flush=True)
        figures["rebuilds"].append(rebuild)
    size = sizes(work)
    print(f"[{label}] after the rebuilds: cache {size['cache_bytes'] / 2**20:,.1f} MB, index {size['index_bytes'] / 2**20:,.1f} MB",
          flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--passages", type=int, default=90_000, help="about this many passages [90,000]")
    parser.add_argument("--documents", type=int, default=1_500, help="documents [1,500]")
    parser.add_argument("--edits", type=int, default=2, help="one-file rebuilds, in process and as `qa build` in turn [2]")
    parser.add_argument("--compare", type=Path, nargs="+", default=[], metavar="CHECKOUT",
                        help="other checkouts measured on the same corpus (before this one)")
    parser.add_argument("--work", type=Path, help="working folder [a temporary one, removed after]")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument("--phase", choices=("fill", "build", "load"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        phases = {"fill": phase_fill, "build": phase_build, "load": phase_load}
        print(json.dumps(phases[args.phase](args.work)))
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        template = work / "corpus"
        if not template.exists():
            write_corpus(template, args.documents, args.passages)
        print(f"corpus: {args.documents:,} documents in {template}, "
              f"{sum(p.stat().st_size for p in template.iterdir()) / 2**20:,.1f} MB", flush=True)
        results = {}
        for number, checkout in enumerate([*args.compare, PROJECT]):
            results[str(checkout)] = measure(checkout.resolve(), template, work / f"run-{number}", args.edits)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

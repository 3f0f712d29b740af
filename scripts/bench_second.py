"""Benchmark: the second encoder (USE-multilingual, qa/embeddings/second_encoder.py) over a build's passages
and one question at a time, the package's own forward pass against the batch pass (qa/embeddings/second_batch.py).

    .venv/bin/python scripts/bench_second.py                    # 2,000 statute passages, ~1 minute on 2 cores
    .venv/bin/python scripts/bench_second.py --passages 500 --rounds 1

Passages: the embedding texts a build makes (Passage.embedding_text, the default Config's passage sizes)
of the statute library's Markdown laws (../shared/eval/statutes/corpus), documents in a seeded order,
the first --passages of them. Printed, with the load average (a shared machine's load moves from minute
to minute, so only figures of one run are compared):

  passages  the build's second-encoder stage (second_vectors through CachedSecond, an empty embedding
            cache in a temporary folder, progress reported): passages/s with the package's pass as the
            build ran it before (64 texts a call, one BLAS thread), and with the batch pass on 1 thread and
            on --threads threads (one per core by default), each --rounds times in turn (median); how the
            stored float16 vectors (second.npy's) compare with before's.
  question  one question at a time (the dev questions, tests/data/dev_questions.tsv): median ms of the
            path questions take (the package's pass, one BLAS thread), of that pass on --threads BLAS
            threads, and of the batch pass on a single question (for comparison: it is not used there).
"""

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from qa.config import Config  # noqa: E402
from qa.documents.corpus import list_sources, read_corpus  # noqa: E402
from qa.embeddings.cache import EmbeddingCache  # noqa: E402
from qa.embeddings.second_encoder import SecondEncoder  # noqa: E402
from qa.indexing.embedding import CachedSecond, second_vectors  # noqa: E402
from qa.passages import Passage, make_passages  # noqa: E402

STATUTES = PROJECT.parent / "shared" / "eval" / "statutes" / "corpus"
DEV_QUESTIONS = PROJECT / "tests" / "data" / "dev_questions.tsv"


def corpus_passages(corpus: Path, count: int, seed: int = 25) -> list[Passage]:
    """The first `count` passages of the corpus's documents in a seeded order, as a build makes them."""
    paths = list_sources(corpus)
    random.Random(seed).shuffle(paths)
    config, passages = Config(), []
    for start in range(0, len(paths), 20):
        documents, _ = read_corpus(corpus, paths[start : start + 20])
        passages += make_passages(documents, config.max_passage_chars, max_unit_chars=config.max_unit_chars)
        if len(passages) >= count:
            break
    return passages[:count]


def questions() -> list[str]:
    """The dev questions (the last of six tab-separated columns)."""
    lines = DEV_QUESTIONS.read_text(encoding="utf-8").splitlines()
    return [line.split("\t")[-1] for line in lines if line.strip() and not line.startswith("#")]


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=STATUTES)
    parser.add_argument("--passages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    passages = corpus_passages(args.corpus, args.passages)
    texts = [passage.embedding_text() for passage in passages]
    encoder = SecondEncoder(remembered=0)
    encoder.embed(["载入"])  # the model, loaded before any timing
    use, batch_encoder, blas = encoder._model
    tokens = use._sp.encode(texts, out_type=int, add_bos=True, add_eos=True)
    print(f"{len(texts)} passages of {args.corpus}, {np.mean([len(t) for t in tokens]):.0f} tokens each on average; "
          f"{os.cpu_count()} cores; load {load()}")

    class Before:  # the second encoder as it was: the package's pass, 64 texts a call
        name = SecondEncoder.name

        def embed(self, batch: list[str]) -> np.ndarray:
            vectors = np.concatenate([use.encode(batch[start : start + 64]) for start in range(0, len(batch), 64)])
            return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def batch_pass(threads: int) -> SecondEncoder:
        fresh = SecondEncoder(threads=threads, remembered=0)
        fresh._model = encoder._model
        return fresh

    runs = {"package pass (before)": Before(), "batch pass, 1 thread": batch_pass(1),
            f"batch pass, {args.threads} threads": batch_pass(args.threads)}
    seconds = {name: [] for name in runs}
    stored, reports = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        for round in range(args.rounds):
            for number, (name, second_encoder) in enumerate(runs.items()):
                # The build's stage (qa/indexing/embedding.py: second_vectors) over an empty cache.
                with EmbeddingCache(Path(folder) / f"{round}-{number}.sqlite", "e5", float16=[SecondEncoder.name]) as cache:
                    progress = []
                    started = time.perf_counter()
                    stored[name] = second_vectors(passages, CachedSecond(cache, second_encoder), lambda *report: progress.append(report))
                    seconds[name].append(time.perf_counter() - started)
                    reports[name] = len(progress)
    before = stored["package pass (before)"].astype(np.float32)
    base = statistics.median(seconds["package pass (before)"])
    print(f"\na build's second-encoder stage, empty cache (median of {args.rounds}; load {load()})")
    for name, times in seconds.items():
        new = stored[name].astype(np.float32)
        print(f"  {name:28s} {len(texts) / statistics.median(times):7.0f} passages/s  x{base / statistics.median(times):4.2f}"
              f"  ({reports[name]} progress reports)  stored float16 vectors: least cosine to before 1 - {1 - np.min(_cosines(new, before)):.1e},"
              f" {np.mean(new == before):.2%} of numbers equal, largest difference {np.abs(new - before).max():.1e}")

    asked = questions()
    one_question = {
        "package pass, 1 thread (used)": lambda q: _package(use, 1, q),
        f"package pass, {args.threads} threads": lambda q: _package(use, args.threads, q),
        "batch pass, 1 thread": lambda q: _limited(blas, batch_encoder, use._sp.encode([q], out_type=int, add_bos=True, add_eos=True)),
    }
    times = {name: [] for name in one_question}
    for _ in range(args.rounds):
        for question in asked:
            for name, encode in one_question.items():
                started = time.perf_counter()
                encode(question)
                times[name].append(time.perf_counter() - started)
    print(f"\none question at a time ({len(asked)} dev questions × {args.rounds}; load {load()})")
    for name, measured in times.items():
        print(f"  {name:32s} median {1000 * statistics.median(measured):.2f} ms  p90 {1000 * np.percentile(measured, 90):.2f} ms")


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def _package(use, threads: int, question: str) -> np.ndarray:
    """The package's pass on `threads` BLAS threads (it limits them itself, to its backend's `threads`)."""
    use._model.threads = threads
    try:
        return use.encode([question])
    finally:
        use._model.threads = 1


def _limited(blas, encode, batch):
    with blas(limits=1, user_api="blas"):
        return encode(batch)


if __name__ == "__main__":
    main()

"""The stores measured (issue 11): a one-file edit in a large local store, and Milvus Lite on real corpora.

    .venv/bin/python scripts/bench_stores.py update [--passages 1000000] [--vector-index flat]   # local: full vs one file edited
    .venv/bin/python scripts/bench_stores.py milvus [--squad ../shared/eval/cmrc2018_trial.json]

`update` writes a synthetic corpus of 384-d vectors (20 passages a file) through `write_index`, as
`qa build` does, then replaces the passages of one file (20 removed, 21 added) and writes again:
the second write updates the previous build's vector index instead of making a new one (HNSW at
this size). It reports seconds and peak memory of each, and what the update did.

`milvus` builds the seed corpus and a SQuAD file's paragraphs (CMRC 2018 trial by default, or the
32-paragraph slice in tests/data when ../shared is absent) into the local store and into Milvus
Lite, and reports build seconds, per-question seconds (p50, p95, in process) and answer@1 (or
passage@1 for the seed) through each. `--json FILE` writes the figures.
"""

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))
# OpenMP threads that spin while waiting (FAISS's HNSW build) crawl when the cores are shared, as qa/cli.py says.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from qa.assistant import Assistant  # noqa: E402
from qa.config import Config  # noqa: E402
from qa.embeddings.cache import CACHE_FILE  # noqa: E402
from qa.evaluation import evaluate_questions, read_squad, read_tsv_questions  # noqa: E402
from qa.passages import Passage  # noqa: E402
from qa.store.base import passage_keys  # noqa: E402
from qa.store.folder import last_build, load_index, make_manifest, write_index  # noqa: E402
from qa.store.local import LocalStore, choose_vector_index  # noqa: E402

DIMENSION = 384
PER_FILE = 20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic(count: int, seed: int = 0, first_file: int = 0) -> tuple[list[Passage], np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((count, DIMENSION), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    passages = [
        Passage(id=i, source=f"doc{first_file + i // PER_FILE:06d}.md", section="", start=(i % PER_FILE) * 100,
                end=(i % PER_FILE) * 100 + 90, text=f"第{first_file + i // PER_FILE}号文件第{i % PER_FILE}段（{seed}）")
        for i in range(count)
    ]
    return passages, vectors


def local_update(count: int, kind: str = "auto") -> dict:
    """Full write of `count` synthetic passages (vector index `kind`: auto, flat, hnsw, ivf), then one
    file's passages replaced and written again."""
    figures: dict = {"passages": count}
    passages, vectors = synthetic(count)
    with tempfile.TemporaryDirectory(prefix="qa-bench-stores-") as work:
        index_dir = Path(work)
        settings = choose_vector_index(count, Config(vector_index=kind))
        sources = {f"doc{i:06d}.md": "0" * 64 for i in range((count + PER_FILE - 1) // PER_FILE)}
        manifest = make_manifest("synthetic", DIMENSION, {}, sources, len(sources), count, vector_index=settings)
        started = time.perf_counter()
        passage_keys(passages, vectors)
        figures["keys_seconds"] = round(time.perf_counter() - started, 2)
        started = time.perf_counter()
        write_index(index_dir, manifest, passages, vectors, LocalStore(), last_build(index_dir))
        figures["full_seconds"] = round(time.perf_counter() - started, 1)
        figures["full_peak_mb"] = round(peak_mb())
        print(f"full write of {count:,} passages ({settings['type']}): {figures['full_seconds']} s", flush=True)

        # One file edited: its 20 passages replaced by 21 new ones, in its place.
        edited = 7
        fresh, fresh_vectors = synthetic(PER_FILE + 1, seed=1, first_file=edited)
        before, after = edited * PER_FILE, (edited + 1) * PER_FILE
        passages = passages[:before] + fresh + passages[after:]
        passages = [Passage.from_dict({**p.to_dict(), "id": i}) for i, p in enumerate(passages)]
        vectors = np.concatenate([vectors[:before], fresh_vectors, vectors[after:]])
        manifest = make_manifest("synthetic", DIMENSION, {}, sources, len(sources), len(passages), vector_index=settings)
        started = time.perf_counter()
        write_index(index_dir, manifest, passages, vectors, LocalStore(), last_build(index_dir))
        figures["one_file_seconds"] = round(time.perf_counter() - started, 1)
        figures["one_file_peak_mb"] = round(peak_mb())
        index = load_index(index_dir)
        figures["update"] = index.manifest["store"]
        print(f"one file edited: {figures['one_file_seconds']} s ({figures['update']})", flush=True)
        nearest = index.search(fresh_vectors[:5], 1)
        figures["edited_found_first"] = [hits[0][0] for hits in nearest] == list(range(before, before + 5))
    return figures


def milvus_figures(squad: Path, work: Path) -> dict:
    """Build and ask the seed and a SQuAD file through the local store and Milvus Lite."""
    from qa.store.milvus import close_client

    figures: dict = {}
    documents, squad_questions = read_squad(squad)
    squad_corpus = work / "squad-corpus"
    squad_corpus.mkdir()
    for source, text in documents.items():
        (squad_corpus / source).write_text(text, encoding="utf-8")
    seed_questions = read_tsv_questions(PROJECT / "eval" / "seed_in_scope.tsv")
    sets = {"seed": (PROJECT / "corpus", seed_questions), squad.stem: (squad_corpus, [q for q in squad_questions if q.question])}
    assistant = None
    for name, (corpus, questions) in sets.items():
        for store in ("local", "milvus"):
            index_dir = work / f"{name}-{store}"
            config = Config(corpus_dir=corpus, index_dir=index_dir, store=store, milvus_uri=str(work / f"{name}.db"))
            if store == "milvus":  # the embeddings the local build made: both builds then embed nothing
                index_dir.mkdir()
                shutil.copy(work / f"{name}-local" / CACHE_FILE, index_dir / CACHE_FILE)
            assistant = Assistant(config, assistant.embedder if assistant else None)
            started = time.perf_counter()
            report = assistant.rebuild()
            build = time.perf_counter() - started
            times = []

            def ask(texts, assistant=assistant, times=times):
                answers = []
                for text in texts:  # one question at a time, as a user asks
                    started = time.perf_counter()
                    answers.extend(assistant.ask_many([text], 5))
                    times.append(time.perf_counter() - started)
                return answers

            result = evaluate_questions(questions, ask)
            figures[f"{name} {store}"] = {
                "passages": report.passages, "build_seconds": round(build, 1), "embedded": report.embedded,
                "p50_ms": round(1000 * float(np.percentile(times, 50)), 1), "p95_ms": round(1000 * float(np.percentile(times, 95)), 1),
                "at_1": result.metrics["passage@1"], "doc@1": result.metrics["doc@1"], "questions": result.in_scope,
            }
            print(name, store, figures[f"{name} {store}"], flush=True)
            if store == "milvus":
                close_client(config.milvus_uri)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["update", "milvus"])
    parser.add_argument("--passages", type=int, default=1_000_000)
    parser.add_argument("--vector-index", default="auto", choices=["auto", "flat", "hnsw", "ivf"],
                        help="update: the vector index (auto: HNSW from 40,000 passages; flat builds in seconds at any size)")
    parser.add_argument("--squad", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.what == "update":
        figures = local_update(args.passages, args.vector_index)
    else:
        squad = args.squad or PROJECT.parent / "shared" / "eval" / "cmrc2018_trial.json"
        if not squad.exists():
            print(f"{squad} is absent: using the slice in tests/data", flush=True)
            squad = PROJECT / "tests" / "data" / "cmrc2018_trial_small.json"
        with tempfile.TemporaryDirectory(prefix="qa-bench-milvus-") as work:
            figures = milvus_figures(squad, Path(work))
    print(json.dumps(figures, ensure_ascii=False, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, ensure_ascii=False, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()

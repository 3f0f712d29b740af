"""Benchmark: a question limited to collections or a document (qa/search/scope.py) against the same question
over the whole corpus, per question, on this machine; the ratio is the figure (both measured in one run).

    .venv/bin/python scripts/bench_filter.py                  # ~4 minutes on 2 cores
    .venv/bin/python scripts/bench_filter.py --copies 16 --questions 50   # quicker
    .venv/bin/python scripts/bench_filter.py --json filter.json

Two corpora, both from the CMRC 2018 trial paragraphs (256 paragraphs, their questions):

  exact   the paragraphs filed into eight folders (collections), indexed with the model (an exact index:
          every passage scored for every question): `Assistant.ask` (question encoding, retrieval, the
          decision) and retrieval alone (`HybridRetriever.search_read`, the question already read), over
          the whole corpus and within one collection, half the collections and one document.
  scale   the same passages copied --copies times (each copy's vectors moved by a small noise, as
          tests/search/test_candidates.py does), the copies in eight folders of one subfolder each, over
          HNSW, scoring candidates as a large corpus is served: retrieval alone, whole corpus against a
          copy (one subfolder: the scope compared one by one), a folder (an eighth) and half the folders
          (HNSW searched with a selector); and how many of each limited question's hits are those of
          scoring every passage and keeping the scope's (recall@k against the exact ranking).
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may come from a model hub
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # threads sleep while waiting, as the qa command sets (qa/cli.py)

import faiss  # noqa: E402
import numpy as np  # noqa: E402
from scipy import sparse  # noqa: E402

from qa.assistant import Assistant  # noqa: E402
from qa.config import Config  # noqa: E402
from qa.evaluation import read_squad  # noqa: E402
from qa.passages import Passage  # noqa: E402
from qa.search.keyword import KeywordIndex  # noqa: E402
from qa.search.retrieval import HybridRetriever  # noqa: E402
from qa.store.local import LocalIndex, choose_vector_index, new_vector_index  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
CMRC = PROJECT.parent / "shared" / "eval" / "cmrc2018_trial.json"
FOLDERS = 8
results: dict = {}


def p50_p95(seconds: list[float]) -> dict:
    ordered = sorted(seconds)
    return {"p50": statistics.median(ordered), "p95": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]}


def timed(runs: dict, questions: list, rounds: int = 1) -> dict[str, dict]:
    """p50 and p95 seconds of each `runs[name](question)` over `questions` (one warm-up first). The runs take
    turns question by question, so that a shared machine's changing load weighs on all of them alike."""
    for run in runs.values():
        run(questions[0])
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for question in questions:
            for name, run in runs.items():
                started = time.perf_counter()
                run(question)
                seconds[name].append(time.perf_counter() - started)
    return {name: p50_p95(taken) for name, taken in seconds.items()}


def report(label: str, figures: dict[str, dict], whole: str = "whole corpus") -> None:
    base = figures[whole]["p50"]
    for name, figure in figures.items():
        ratio = "" if name == whole else f"   {figure['p50'] / base:.2f}x the whole corpus's p50"
        print(f"   {label:22s} {name:34s} p50 {1000 * figure['p50']:7.2f} ms   p95 {1000 * figure['p95']:7.2f} ms{ratio}", flush=True)


def write_library(folder: Path, cmrc: Path) -> tuple[list[str], dict[str, str]]:
    """The CMRC trial paragraphs as .md files in FOLDERS folders; their questions, and each paragraph's source."""
    paragraphs, questions = read_squad(cmrc)
    where = {}
    for number, (name, text) in enumerate(paragraphs.items()):
        where[name] = f"c{number % FOLDERS}/{name}"
        (folder / where[name]).parent.mkdir(parents=True, exist_ok=True)
        (folder / where[name]).write_text(text, encoding="utf-8")
    return [q.question for q in questions if q.question], where


def exact_corpus(args, work: Path) -> tuple[Assistant, list[str]]:
    corpus = work / "corpus"
    questions, _ = write_library(corpus, args.cmrc)
    questions = questions[: args.questions]
    assistant = Assistant(Config(corpus_dir=corpus, index_dir=work / "index"))
    started = time.perf_counter()
    assistant.rebuild()
    retriever = assistant._serving()[1]
    print(f"exact: {len(assistant.documents())} documents in {len(assistant.collections())} collections, "
          f"{len(retriever.passages):,} passages, built in {time.perf_counter() - started:.0f} s; {len(questions)} questions", flush=True)
    scopes = {"whole corpus": None, "one collection (an eighth)": ["c3"],
              "half the collections": [f"c{n}" for n in range(0, FOLDERS, 2)], "one document": [assistant.documents()[5]]}
    asked = retriever.read(questions)
    search = timed({name: lambda q, w=within: retriever.search_read([q], 5, retriever.library.scope(w))
                    for name, within in scopes.items()}, asked, args.rounds)
    report("retrieval alone", search)
    ask = timed({name: lambda q, w=within: assistant.ask(q, 5, within=w) for name, within in scopes.items()}, questions)
    report("Assistant.ask", ask)
    results["exact"] = {"passages": len(retriever.passages), "questions": len(questions), "retrieval": search, "ask": ask}
    return assistant, questions


def scale_corpus(args, assistant: Assistant, questions: list[str]) -> None:
    """The exact corpus's passages copied, over HNSW, scoring candidates (see the module note)."""
    small = assistant._serving()[1]
    rng = np.random.default_rng(11)
    passages, vectors = [], []
    per_folder = max(1, args.copies // FOLDERS)
    for copy in range(args.copies):
        folder = f"f{copy // per_folder}/copy{copy:03d}"
        for p in small.passages:
            passages.append(Passage(id=len(passages), source=f"{folder}/{p.source}", section=p.section, start=p.start,
                                    end=p.end, text=p.text))
        moved = small.vectors + 0.03 * rng.standard_normal(small.vectors.shape).astype(np.float32)
        vectors.append(moved / np.linalg.norm(moved, axis=1, keepdims=True))
    vectors = np.ascontiguousarray(np.concatenate(vectors), dtype=np.float32)
    keywords = KeywordIndex(sparse.vstack([small.keywords.counts] * args.copies).tocsr(), small.keywords.vocabulary,
                            small.keywords.tokenizer)
    config = assistant.config.with_overrides(vector_index="hnsw")
    settings = choose_vector_index(len(passages), config)
    started = time.perf_counter()
    hnsw = new_vector_index(vectors.shape[1], settings)
    hnsw.add(vectors)
    built = time.perf_counter() - started
    served = LocalIndex(folder=Path("."), manifest={"vector_index": settings, "model": "copies"}, passages=passages, vectors=hnsw)
    storage = faiss.downcast_index(hnsw.storage)
    stored = faiss.rev_swig_ptr(storage.get_xb(), len(passages) * vectors.shape[1]).reshape(vectors.shape)
    candidates = HybridRetriever(passages, stored, keywords, small.embedder, config, index=served, score_all=False)
    every = HybridRetriever(passages, stored, keywords, small.embedder, config, index=served, score_all=True)
    folders = sorted({source.split("/")[0] for source in candidates.library.documents})
    scopes = {"whole corpus": None, "one copy (a subfolder)": [f"{folders[1]}/copy{per_folder:03d}"],
              "one folder (an eighth)": [folders[2]], "half the folders": folders[::2]}
    asked = small.read(questions)
    print(f"scale: {len(passages):,} passages ({args.copies} copies) in {len(candidates.library.collections)} collections, "
          f"HNSW built in {built:.0f} s; sizes of the scopes: "
          + ", ".join(f"{name} {len(candidates.library.scope(w).rows):,}" for name, w in scopes.items() if w), flush=True)
    search = timed({name: lambda q, w=within: candidates.search_read([q], 5, candidates.library.scope(w))
                    for name, within in scopes.items()}, asked, args.rounds)
    report("retrieval alone", search)
    recall = {}
    for name, within in scopes.items():
        scope = candidates.library.scope(within)
        found = candidates.search_read(asked, 5, scope)
        exact = [hits for start in range(0, len(asked), 20) for hits in every.search_read(asked[start : start + 20], 5, scope)]
        recall[name] = float(np.mean([len({h.passage.id for h in a} & {h.passage.id for h in b}) / max(1, len(b))
                                      for a, b in zip(found, exact)]))
        assert all(scope is None or all(scope.mask[h.passage.id] for h in hits) for hits in found)
    print("   recall@5 of the candidates' hits against scoring every passage (limited alike): "
          + ", ".join(f"{name} {value:.3f}" for name, value in recall.items()), flush=True)
    results["scale"] = {"passages": len(passages), "questions": len(asked), "retrieval": search, "recall_at_5": recall,
                        "scope_sizes": {name: len(candidates.library.scope(w).rows) for name, w in scopes.items() if w}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=200, help="CMRC questions asked (default 200)")
    parser.add_argument("--rounds", type=int, default=2, help="times each question's retrieval is timed (default 2)")
    parser.add_argument("--copies", type=int, default=64, help="copies of the passages in the scale corpus (default 64; 0: none)")
    parser.add_argument("--cmrc", type=Path, default=CMRC, help=f"the CMRC 2018 trial file [{CMRC}]")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; python {sys.version.split()[0]}, faiss {faiss.__version__}")
    with tempfile.TemporaryDirectory(prefix="bench-filter-") as folder:
        assistant, questions = exact_corpus(args, Path(folder))
        if args.copies:
            scale_corpus(args, assistant, questions)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()

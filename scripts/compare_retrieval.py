"""Compare retrieval methods on the seed dev set and CMRC 2018 trial; prints one line of metrics per method.

Embeddings are cached on disk by text (in $QA_COMPARE_CACHE, default /tmp/qa-compare-cache), so trying
another fusion or passage size re-embeds only new texts. Usage:

    .venv/bin/python scripts/compare_retrieval.py                       # every method, both sets
    .venv/bin/python scripts/compare_retrieval.py --sets seed --chars 80,120
    .venv/bin/python scripts/compare_retrieval.py --encoders e5,use,e5+use
"""

import argparse
import hashlib
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # threads sleep while waiting, as the qa command sets (qa/cli.py)
PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from qa.answer import make_answer  # noqa: E402
from qa.config import Config  # noqa: E402
from qa.documents.corpus import read_corpus  # noqa: E402
from qa.embeddings.model import Embedder  # noqa: E402
from qa.embeddings.second_encoder import SecondEncoder  # noqa: E402
from qa.evaluation import RANKED, evaluate, read_squad, read_tsv_questions  # noqa: E402
from qa.passages import make_passages  # noqa: E402
from qa.search.keyword import build_keywords  # noqa: E402
from qa.search.retrieval import HybridRetriever  # noqa: E402

EVAL = PROJECT.parent / "shared" / "eval"
CACHE = Path(os.environ.get("QA_COMPARE_CACHE", "/tmp/qa-compare-cache"))
SHOWN = ("doc@1", "doc@3", "mrr@10", "ndcg@10", "passage@1", "passage@3")  # of qa.evaluation.METRICS, one line each


class CachedEncoder:
    """embed_questions / embed_passages of an encoder, remembered on disk by (prompt, text)."""

    def __init__(self, name: str, encode):
        self.name, self.encode = name, encode
        self.path = CACHE / f"{name}.npz"
        self.vectors: dict[str, np.ndarray] = {}
        if self.path.exists():
            with np.load(self.path) as file:
                self.vectors = {key: file[key] for key in file.files}
        self.dirty = False

    def _get(self, texts: list[str], prompt: str) -> np.ndarray:
        keys = [hashlib.sha1(f"{prompt}\0{t}".encode()).hexdigest() for t in texts]
        missing = sorted({k: t for k, t in zip(keys, texts) if k not in self.vectors}.items())
        if missing:
            started = time.perf_counter()
            vectors = self.encode([t for _, t in missing], prompt)
            print(f"  [{self.name}] embedded {len(missing)} {prompt} texts in {time.perf_counter() - started:.0f} s", file=sys.stderr)
            self.vectors.update({k: v for (k, _), v in zip(missing, vectors)})
            self.dirty = True
        return np.stack([self.vectors[k] for k in keys]).astype(np.float32)

    def embed_questions(self, questions):
        return self._get(questions, "query")

    def embed_passages(self, texts, progress=None):
        return self._get(texts, "passage")

    def save(self):
        if self.dirty:
            CACHE.mkdir(parents=True, exist_ok=True)
            np.savez(self.path, **self.vectors)


class Combined:
    """Two encoders as one: concatenated unit vectors scaled so a dot product is w·cos1 + (1-w)·cos2."""

    def __init__(self, first, second, weight: float):
        self.first, self.second, self.weight = first, second, weight

    def _join(self, a, b):
        return np.hstack([a * np.sqrt(self.weight), b * np.sqrt(1 - self.weight)]).astype(np.float32)

    def embed_questions(self, questions):
        return self._join(self.first.embed_questions(questions), self.second.embed_questions(questions))

    def embed_passages(self, texts, progress=None):
        return self._join(self.first.embed_passages(texts), self.second.embed_passages(texts))


def encoders(names: list[str]) -> dict:
    e5 = Embedder()
    found = {"e5": CachedEncoder("e5", lambda texts, prompt: e5.embed_questions(texts) if prompt == "query" else e5.embed_passages(texts))}
    if any("use" in name for name in names):
        use = SecondEncoder()  # USE-multilingual has no prompts: the same vector either way
        found["use"] = CachedEncoder("use", lambda texts, prompt: use.embed(texts))
    for name in names:
        if "+" in name:
            first, second = name.split("+")
            found[name] = Combined(found[first], found[second], 0.5)
    return found


def data_sets(names: list[str]) -> dict:
    if not EVAL.exists():
        sys.exit(f"{EVAL} is missing: the dev questions and CMRC set live in ../shared/eval beside the project")
    sets = {}
    if "seed" in names:
        documents, _ = read_corpus(PROJECT / "corpus")
        sets["seed"] = (documents, read_tsv_questions(EVAL / "dev_questions.tsv"))
    if "cmrc" in names:
        texts, questions = read_squad(EVAL / "cmrc2018_trial.json")
        folder = Path(tempfile.mkdtemp(prefix="qa-compare-"))
        for source, text in texts.items():
            (folder / source).write_text(text, encoding="utf-8")
        documents, _ = read_corpus(folder)
        sets["cmrc"] = (documents, [q for q in questions if q.question])  # as `qa eval`: two are blank
    return sets


METHODS = "dense,keyword,rrf,sum:0.3,sum:0.5,sections:0.3:0.5,sections:0.5:0.5,sections:0.3:0.3,sections:0.3:0.7"


def method_settings(method: str) -> dict:
    """'sections:0.3:0.5' -> fusion sections, keyword_weight 0.3, section_weight 0.5."""
    name, *weights = method.split(":")
    settings = {"fusion": name}
    if weights:
        settings["keyword_weight"] = float(weights[0])
    if len(weights) > 1:
        settings["section_weight"] = float(weights[1])
    return settings


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="seed,cmrc")
    parser.add_argument("--chars", default="120", help="comma-separated max_passage_chars values")
    parser.add_argument("--methods", default=METHODS, help="fusion[:keyword_weight[:section_weight]], comma-separated")
    parser.add_argument("--encoders", default="e5")
    parser.add_argument("--tokenizers", default="words+bigrams")
    parser.add_argument(
        "--shares", default=str(Config.max_citation_share),
        help="comma-separated max_citation_share values (0: cite the matching passage alone)",
    )
    parser.add_argument("--misses", action="store_true", help="also list the ids of questions missed at passage@1")
    args = parser.parse_args()
    found = encoders(args.encoders.split(","))
    for set_name, (documents, questions) in data_sets(args.sets.split(",")).items():
        for chars in [int(c) for c in args.chars.split(",")]:
            passages = make_passages(documents, chars)
            for encoder_name in args.encoders.split(","):
                encoder = found[encoder_name]
                vectors = encoder.embed_passages([p.embedding_text() for p in passages])
                for tokenizer in args.tokenizers.split(","):
                    keywords = build_keywords(passages, tokenizer)
                    for share, method in [(float(s), m) for s in args.shares.split(",") for m in args.methods.split(",")]:
                        config = Config(max_passage_chars=chars, keyword_tokenizer=tokenizer, max_citation_share=share)
                        method_config = replace(config, **method_settings(method))
                        retriever = HybridRetriever(passages, vectors, keywords, encoder, method_config)
                        hits = retriever.search_many([q.question for q in questions], RANKED)
                        answers = [make_answer(q.question, h) for q, h in zip(questions, hits)]
                        report = evaluate(questions, answers)
                        print(
                            f"{set_name:5} chars={chars:<4} share={share:<4} {encoder_name:7} {tokenizer:14} {method:14} "
                            + " ".join(f"{key}={report.metrics[key]:.3f}" for key in SHOWN)
                            + f" len={report.top_chars:.0f} "
                            f"declined={report.declined if report.declined is not None else '-'} wrongly={report.wrongly_declined:.3f}"
                            + (f" misses={','.join(report.misses)}" if args.misses else ""),
                            flush=True,
                        )
    for encoder in found.values():
        if isinstance(encoder, CachedEncoder):
            encoder.save()


if __name__ == "__main__":
    main()

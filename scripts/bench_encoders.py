"""Passages per second of each encoder on the same texts, interleaved in one process (a shared machine's load
moves from minute to minute; rounds in turns keep the comparison fair): ONNX Runtime in float32 and int8
(as `qa build` runs them), sentence-transformers in float32 and under bfloat16 autocast (as builds ran before).

    .venv/bin/python scripts/bench_encoders.py                                   # 384 passages of CMRC trial paragraphs
    .venv/bin/python scripts/bench_encoders.py --index /tmp/statutes-index      # 384 passages of a built index

Prints each round and the median passages per second, and each one's ratio to sentence-transformers float32.
"""

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from qa.embeddings.model import Embedder  # noqa: E402
from qa.passages import Passage  # noqa: E402


def sample_texts(index: Path | None, count: int) -> list[str]:
    """`count` passages' embedding texts, longest first (as a build embeds them): from the built index, else
    CMRC trial paragraphs cut into the project's passages."""
    if index is not None:
        lines = (index / "current" / "passages.jsonl").read_bytes().splitlines()
        texts = [Passage.from_dict(json.loads(line)).embedding_text() for line in random.Random(3).sample(lines, count)]
    else:
        from benchmark import cmrc_passage_texts  # scripts/benchmark.py, beside this script

        texts = cmrc_passage_texts(count)
    return sorted(texts, key=len, reverse=True)


def torch_only(precision: str, model=None) -> Embedder:
    embedder = Embedder(precision=precision)
    embedder.export = embedder.encoder = embedder.bulk_encoder = None
    if model is not None:
        embedder.model = model
    return embedder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--index", type=Path, help="a built index whose passages to embed [CMRC trial paragraphs]")
    parser.add_argument("--passages", type=int, default=384)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    texts = sample_texts(args.index, args.passages)
    float32 = torch_only("float32")
    encoders = {
        "ONNX Runtime float32": Embedder(),
        "ONNX Runtime int8": Embedder(precision="int8"),
        "sentence-transformers float32": float32,
        "sentence-transformers bfloat16 autocast": torch_only("bfloat16", float32.model),
    }
    for embedder in encoders.values():
        embedder.embed_passages(texts[-8:])  # sessions and the model loaded before timing
    print(f"{len(texts)} passages, {sum(map(len, texts)) / len(texts):.0f} characters on average, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    speeds: dict[str, list[float]] = {name: [] for name in encoders}
    for round_number in range(args.rounds):
        for name, embedder in encoders.items():
            started = time.perf_counter()
            embedder.embed_passages(texts)
            speeds[name].append(len(texts) / (time.perf_counter() - started))
            print(f"round {round_number + 1}  {name:40s} {speeds[name][-1]:6.1f} passages/s", flush=True)
    base = statistics.median(speeds["sentence-transformers float32"])
    for name, values in speeds.items():
        print(f"median  {name:40s} {statistics.median(values):6.1f} passages/s  {statistics.median(values) / base:.2f}x "
              f"sentence-transformers float32")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

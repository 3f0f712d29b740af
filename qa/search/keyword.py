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

Longer than most modules: tokens, the index and a question's matches (`Matches`) share the normalisation
and the private postings, and a build's cache of tokens is keyed on this one file (qa/indexing/embedding.py).
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

from qa.config import KEYWORD_TOKENIZERS
from qa.errors import REBUILD_HINT, IndexCorruptError
from qa.passages import Passage
from qa.search.bilingual import translations
from qa.text import CJK_RUN, STOPWORDS, bigrams, to_simplified

TOKENIZERS = KEYWORD_TOKENIZERS  # the choices of Config.keyword_tokenizer
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
    itself and the tokens of its Chinese translations (qa/search/bilingual.py), so an English question
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


def same_concepts(question: str, other: str) -> bool:
    """Whether two texts have the same keyword concepts: they normalise (NFKC, simplified script, lower
    case) to one text, e.g. a question and its conversion to the other script, mostly."""
    return question == other or _normalise(question) == _normalise(other)


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
        self.counts.eliminate_zeros()  # every stored count is a term present: its idf counts for coverage
        self.vocabulary = vocabulary
        self.term_ids = {term: i for i, term in enumerate(vocabulary)}
        self.tokenizer = tokenizer
        self.k1, self.b = k1, b
        weights, self.idf = _bm25_weights(self.counts, k1, b)
        # A column-major copy: a question reads the columns of its own few terms. Only this is kept
        # (not the row-major weights, ~1 GB at a million passages); coverage reads the same columns,
        # each entry earning its term's idf.
        self._weights_by_term = weights.tocsc()
        self._weights_by_term.sort_indices()  # `Matches` looks rows up in common terms' columns by binary search

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

    def analyse(self, question: str) -> list[tuple[str, ...]]:
        """The keyword concepts of `question` by this index's tokenizer (`question_concepts`)."""
        return question_concepts(question, self.tokenizer)

    def concepts(self, question: str) -> list[np.ndarray]:
        """Term ids of each keyword concept of `question` that the corpus has (see `question_concepts`)."""
        return self.concept_ids(self.analyse(question))

    def concept_ids(self, concepts: list[tuple[str, ...]]) -> list[np.ndarray]:
        """Term ids of each of a question's `concepts` (from `analyse`) that the corpus has.

        A concept none of whose terms occur in the corpus is an empty array: it still counts
        against coverage, as something the question asks for that the corpus lacks.
        """
        return [np.array(sorted({self.term_ids[t] for t in concept if t in self.term_ids}), dtype=np.int64) for concept in concepts]

    def scores(self, questions: list[str]) -> np.ndarray:
        """BM25 score of every text for every question: an array (questions × texts), 0 where no term matches.

        Each concept adds the weight of its best-matching term, so an English word with eight
        translations counts once, as in structured-query cross-language retrieval.
        """
        return self.concept_scores([self.concepts(question) for question in questions])

    def concept_scores(self, questions: list[list[np.ndarray]]) -> np.ndarray:
        """`scores` of questions already analysed: each one's term ids by concept (from `concepts` or `concept_ids`)."""
        result = np.zeros((len(questions), len(self)), dtype=np.float32)
        for row, concepts in enumerate(questions):
            result[row] = self._concept_sum(concepts)
        return result

    def coverage(self, questions: list[str]) -> np.ndarray:
        """Share (0..1) of each question's keyword weight (idf) found in each text: questions × texts.

        Unlike BM25 it is comparable across corpora and questions. A concept weighs the highest idf
        of its terms, and a text earns the idf of the best of them it contains; a concept the
        corpus lacks weighs the highest possible idf, so a question about something absent scores
        low everywhere.
        """
        return self.concept_coverage([self.concepts(question) for question in questions])

    def concept_coverage(self, questions: list[list[np.ndarray]]) -> np.ndarray:
        """`coverage` of questions already analysed: each one's term ids by concept (from `concepts` or `concept_ids`)."""
        result = np.zeros((len(questions), len(self)), dtype=np.float32)
        for row, concepts in enumerate(questions):
            total = self._coverage_total(concepts)
            if total > 0:
                result[row] = self._concept_sum(concepts, idf=True) / total
        return result

    def _coverage_total(self, concepts: list[np.ndarray]) -> float:
        """A question's whole keyword weight for `coverage`: each concept's highest idf, the highest
        possible idf for a concept the corpus lacks."""
        return sum(float(self.idf[ids].max()) if len(ids) else self._unknown_idf() for ids in concepts)

    def _unknown_idf(self) -> float:
        """The idf of a term no text holds: the highest possible, so that a question word the corpus lacks weighs most."""
        return float(np.log(1 + (len(self) + 0.5) / 0.5))

    def text_coverage(self, question: str, texts: list[str], concepts: list[tuple[str, ...]] | None = None) -> np.ndarray:
        """Share (0..1) of the question's keyword weight found in each of `texts` (texts need not be
        indexed; e.g. the sentences of a cited passage). Weights as in `coverage`. `concepts`: the
        question's, when already analysed (`analyse`)."""
        concepts = self.analyse(question) if concepts is None else concepts
        weights = []
        for concept in concepts:
            known = [float(self.idf[self.term_ids[t]]) for t in concept if t in self.term_ids]
            weights.append(max(known) if known else self._unknown_idf())
        total = sum(weights)
        result = np.zeros(len(texts), dtype=np.float32)
        if total <= 0:
            return result
        for row, text in enumerate(texts):
            tokens = set(tokenize(text, self.tokenizer))
            result[row] = sum(w for concept, w in zip(concepts, weights) if tokens.intersection(concept)) / total
        return result

    def matches(self, concepts: list[np.ndarray], common: int) -> "Matches":
        """The texts a question's `concepts` (from `concepts`) match, for scoring only candidates in a
        large corpus (qa/search/candidates.py): see `Matches`. A concept whose terms occur in more than
        `common` texts is common: it never chooses texts, and is looked up only for the texts asked about."""
        return Matches(self, concepts, common)

    def _concept_postings(self, ids: np.ndarray, idf: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The texts holding any of one concept's terms `ids` (each once) and what each earns: the BM25
        weight of its best term, or with `idf` the highest idf of its terms. Read from the terms' postings
        (CSC columns), never a row per text."""
        by_term = self._weights_by_term
        starts, ends = by_term.indptr[ids], by_term.indptr[ids + 1]
        if len(ids) == 1:  # most concepts: one column, rows already distinct
            rows = by_term.indices[starts[0] : ends[0]]
            values = by_term.data[starts[0] : ends[0]] if not idf else np.full(len(rows), self.idf[ids[0]], dtype=np.float32)
            return rows, values
        rows = np.concatenate([by_term.indices[a:b] for a, b in zip(starts, ends)])
        values = np.concatenate([by_term.data[a:b] for a, b in zip(starts, ends)]) if not idf else np.repeat(self.idf[ids], ends - starts)
        order = np.lexsort((-values, rows))  # a text holding several of the terms earns its best one
        rows, values = rows[order], values[order]
        first = np.r_[True, rows[1:] != rows[:-1]]
        return rows[first], values[first]

    def _concept_sum(self, concepts: list[np.ndarray], idf: bool = False) -> np.ndarray:
        """Sum over concepts of what each text earns from the concept (`_concept_postings`), for every text."""
        total = np.zeros(len(self), dtype=np.float32)
        np.add.at(total, *self._matched(concepts, idf))  # in concept order, as `+=` concept after concept would
        return total

    def _matched(self, concepts: list[np.ndarray], idf: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """`_concept_postings` of each concept, one after the other: texts (a text once per concept) and values."""
        postings = [self._concept_postings(ids, idf) for ids in concepts if len(ids)]
        if not postings:
            return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32)
        return np.concatenate([rows for rows, _ in postings]), np.concatenate([values for _, values in postings])

    def _concept_sum_of(self, concepts: list[np.ndarray], rows: np.ndarray, idf: bool = False) -> np.ndarray:
        """`_concept_sum` for the texts `rows` (sorted) only: each term's postings searched for them
        (a binary search per row: for long postings and few rows)."""
        by_term = self._weights_by_term
        total = np.zeros(len(rows), dtype=np.float32)
        for ids in concepts:
            best = np.zeros(len(rows), dtype=np.float32)
            for term in ids:
                column = by_term.indices[by_term.indptr[term] : by_term.indptr[term + 1]]
                if not len(column):
                    continue
                at = np.minimum(np.searchsorted(column, rows), len(column) - 1)
                values = by_term.data[by_term.indptr[term] + at] if not idf else self.idf[term]
                best = np.maximum(best, np.where(column[at] == rows, values, 0))
            total += best
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
        hint = REBUILD_HINT
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


class Matches:
    """A question's keyword matches in one index (`KeywordIndex.matches`), read once from the postings of
    its rare concepts and summed per text: the texts with the best BM25 (`top`), and the BM25 and coverage
    of any texts (`scores_of`, `coverage_of`) with its common concepts looked up for those texts only.

    A question then costs its rare words' postings, not the corpus: reading a common word's postings
    (a word in most texts, weighing little) for every text would cost as much as scoring every text."""

    def __init__(self, index: KeywordIndex, concepts: list[np.ndarray], common: int):
        self.index, self.concepts = index, concepts
        by_term = index._weights_by_term
        sizes = [int((by_term.indptr[ids + 1] - by_term.indptr[ids]).sum()) for ids in concepts]
        self.rare = [ids for ids, size in zip(concepts, sizes) if 0 < size <= common]
        self.common = [ids for ids, size in zip(concepts, sizes) if size > common]
        # The texts matched, a text once per rare concept that it matches, and their BM25 summed as
        # `KeywordIndex.scores` sums them (concept after concept): the same floats.
        self._rows, values = index._matched(self.rare)
        self._bm25 = np.zeros(len(index), dtype=np.float32)
        np.add.at(self._bm25, self._rows, values)
        self._coverage = None

    def top(self, count: int, ties: int = 2) -> tuple[np.ndarray, np.ndarray, float]:
        """The texts (sorted) with about the `count` best BM25 scores, their scores and the best of them.

        Texts tied with the last are kept, up to `ties` × `count` in all. The texts are chosen by the rare
        concepts, their scores count all. Exact when no concept is common: the texts are those of the
        `count` best scores (and those tied with the last), the score the best."""
        # A text is in `_rows` at most once per rare concept, so the count × concepts best entries there hold
        # at least `count` texts: the texts of the `count` best scores (and those tied) score at least the
        # lowest of those entries. Only texts that do are sorted out (not every text matched, nor the corpus).
        scores, most = self._bm25[self._rows], count * len(self.rare)
        near = self._rows
        if len(near) > most:
            near = near[scores >= np.partition(scores, len(scores) - most)[len(scores) - most]]
        near = np.unique(near)
        chosen = near[_best(self._bm25[near], count, ties)]
        exact = self.scores_of(chosen)
        return chosen, exact, float(exact.max()) if len(exact) else 0.0

    def scores_of(self, rows: np.ndarray) -> np.ndarray:
        """BM25 of the texts `rows` (sorted): `KeywordIndex.scores` for those texts only."""
        scores = self._bm25[rows]
        return scores + self.index._concept_sum_of(self.common, rows) if self.common else scores

    def coverage_of(self, rows: np.ndarray) -> np.ndarray:
        """`KeywordIndex.coverage` of the texts `rows` (sorted)."""
        index = self.index
        total = index._coverage_total(self.concepts)
        if total <= 0:
            return np.zeros(len(rows), dtype=np.float32)
        if self._coverage is None:
            self._coverage = index._concept_sum(self.rare, idf=True)
        found = self._coverage[rows]
        if self.common:
            found = found + index._concept_sum_of(self.common, rows, idf=True)
        return found / total


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
    """The keyword index of `passages` (document name, section title and text: Passage.keyword_text), row i = passage i."""
    return KeywordIndex.build([p.keyword_text() for p in passages], tokenizer=tokenizer)


def load_keywords(index) -> KeywordIndex:
    """The keyword index saved in a loaded `Index`'s folder (IndexCorruptError if missing or damaged)."""
    return KeywordIndex.load(Path(index.folder) / KEYWORDS_FILE, rows=len(index.passages))

"""Keyword retrieval: BM25 over Chinese words and character bigrams, held as sparse matrices.

Dense embeddings find paraphrases; keywords find the corpus's own terms (浙医互认, 低散乱) that a
small embedding model blurs. Chinese has no spaces, so a text becomes tokens in one of three ways
(`Config.keyword_tokenizer`):

    "bigrams"        every pair of adjacent Chinese characters, plus lower-cased Latin words and numbers
    "words"          jieba's search-mode words (it also emits the sub-words of long words)
    "words+bigrams"  both (default): words give precision, bigrams recall for words jieba splits oddly

The index stores raw term counts, one row per passage; BM25 weights are derived from them, so the same
counts also give section-level scores (`grouped`) without tokenizing again. Scoring a batch of
questions is one sparse matrix product, never a loop over passages. A build saves the weights that
searching reads (the passages' and the sections') beside the counts, uncompressed, and loading maps
them from the file instead of deriving them again: at 100,000 passages that was five seconds and half
a gigabyte before the first answer; the counts are read only if asked for (a rebuild reuses them).

Longer than most modules: tokens, the index and a question's matches (`Matches`) share the normalisation
and the private postings, and a build's cache of tokens is keyed on this one file (qa/indexing/embedding.py).
"""

import io
import json
import logging
import re
import struct
import unicodedata
import zipfile
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
FORMAT_VERSION = 2  # 2: the BM25 weights stored beside the counts (format 1, counts only, is still read)
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
        self._counts = counts.tocsr().astype(np.float32)
        self._counts.eliminate_zeros()  # every stored count is a term present: its idf counts for coverage
        self._read_counts = None
        self._rows = self._counts.shape[0]
        self.vocabulary = vocabulary
        self.term_ids = {term: i for i, term in enumerate(vocabulary)}
        self.tokenizer = tokenizer
        self.k1, self.b = k1, b
        weights, self.idf = _bm25_weights(self._counts, k1, b)
        # A column-major copy: a question reads the columns of its own few terms. Only this is kept
        # (not the row-major weights, ~1 GB at a million passages); coverage reads the same columns,
        # each entry earning its term's idf.
        self._weights_by_term = weights.tocsc()
        self._weights_by_term.sort_indices()  # `Matches` looks rows up in common terms' columns by binary search
        self._grouped: tuple[np.ndarray, KeywordIndex] | None = None  # `grouped` as `load` read it

    @classmethod
    def _stored(cls, rows: int, vocabulary: list[str], term_ids: dict[str, int], tokenizer: str, k1: float, b: float,
                weights_by_term: sparse.csc_matrix, idf: np.ndarray, read_counts) -> "KeywordIndex":
        """An index of weights already derived (as `load` reads them); `read_counts()` gives its counts when asked for."""
        index = cls.__new__(cls)
        index._counts, index._read_counts, index._rows = None, read_counts, rows
        index.vocabulary, index.term_ids, index.tokenizer, index.k1, index.b = vocabulary, term_ids, tokenizer, k1, b
        index._weights_by_term, index.idf, index._grouped = weights_by_term, idf, None
        return index

    @property
    def counts(self) -> sparse.csr_matrix:
        """The raw term counts (texts × terms, float32); of a loaded index read when first asked for."""
        if self._counts is None:
            self._counts = self._read_counts()
        return self._counts

    def __len__(self) -> int:
        return self._rows

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
        """The index of larger units (e.g. sections): row g sums the counts of the rows whose group is g.

        The last one is kept (a build's retriever and its `save` derive it once), and the one `save` stored
        is read with the index rather than derived again."""
        groups = np.asarray(groups)
        if self._grouped is None or not np.array_equal(self._grouped[0], groups):
            grouped = KeywordIndex(_grouped_counts(self.counts, groups), self.vocabulary, self.tokenizer, self.k1, self.b)
            self._grouped = groups.copy(), grouped
        return self._grouped[1]

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

    def save(self, path: Path, groups: np.ndarray | None = None) -> None:
        """Write the index to one .npz file at `path`: the vocabulary and settings (compressed); the counts,
        and the BM25 weights by term and idf that searching reads, uncompressed (for `load` to map them:
        compressing the counts took seconds for 20 MB less). `groups`: also the weights of `grouped(groups)`
        (the sections' index, qa/search/retrieval.py)."""
        settings = {"format": FORMAT_VERSION, "tokenizer": self.tokenizer, "k1": self.k1, "b": self.b}
        counts = self.counts
        small = len(counts.data) == 0 or counts.data.max() < 2**16  # counts are whole numbers: 2 bytes hold them
        arrays = {"vocabulary": np.array(json.dumps(self.vocabulary, ensure_ascii=False)), "settings": np.array(json.dumps(settings))}
        stored = {"data": counts.data.astype(np.uint16) if small else counts.data, "indices": counts.indices,
                  "indptr": counts.indptr, "shape": np.array(counts.shape)}
        for prefix, index in [("", self), *([("sections_", self.grouped(groups))] if groups is not None else [])]:
            weights = index._weights_by_term
            stored.update({f"{prefix}weights_data": weights.data, f"{prefix}weights_indices": weights.indices,
                           f"{prefix}weights_indptr": weights.indptr, f"{prefix}idf": index.idf})
        if groups is not None:
            stored["groups"] = np.asarray(groups)
        _write_npz(Path(path), arrays, stored)

    @classmethod
    def load(cls, path: Path, rows: int | None = None) -> "KeywordIndex":
        """Read an index written by `save` (its weights memory-mapped, its counts when first asked for);
        IndexCorruptError if it is damaged or has not `rows` rows."""
        hint = REBUILD_HINT
        try:
            with zipfile.ZipFile(path) as archive:
                names = {name.removesuffix(".npy") for name in archive.namelist()}
                read = lambda name: _npz_array(path, archive, name)  # noqa: E731
                settings = json.loads(str(read("settings")))
                vocabulary = json.loads(str(read("vocabulary")))
                shape = tuple(int(n) for n in read("shape"))
                if settings.get("format") == 1:
                    counts = sparse.csr_matrix((read("data"), read("indices"), read("indptr")), shape=shape)
                else:  # the weights; the counts only when asked for
                    stored = {name: read(name) for name in names if "weights" in name or name.endswith("idf") or name == "groups"}
        except FileNotFoundError:
            raise IndexCorruptError(f"{path} is missing; {hint}") from None
        except Exception as error:  # numpy, zipfile and scipy raise many types for a damaged file
            raise IndexCorruptError(f"{path} cannot be read as a keyword index ({error}); {hint}") from None
        if settings.get("format") not in (1, FORMAT_VERSION) or settings.get("tokenizer") not in TOKENIZERS:
            raise IndexCorruptError(f"{path} is keyword index format {settings.get('format')}, expected {FORMAT_VERSION}; {hint}")
        if len(vocabulary) != shape[1] or (rows is not None and shape[0] != rows):
            raise IndexCorruptError(
                f"{path} has {shape[0]} rows and {len(vocabulary)} terms for {shape[1]} columns, "
                f"expected {rows} rows; {hint}"
            )
        if settings["format"] == 1:
            return cls(counts, vocabulary, settings["tokenizer"], settings["k1"], settings["b"])
        term_ids = {term: i for i, term in enumerate(vocabulary)}

        def index_of(prefix: str, count: int, read_counts) -> "KeywordIndex":
            weights = sparse.csc_matrix(
                (stored[f"{prefix}weights_data"], stored[f"{prefix}weights_indices"], stored[f"{prefix}weights_indptr"]),
                shape=(count, shape[1]), copy=False,
            )
            weights.has_sorted_indices = True  # sorted before `save`; checking would read every page
            return cls._stored(count, vocabulary, term_ids, settings["tokenizer"], settings["k1"], settings["b"],
                               weights, stored[f"{prefix}idf"], read_counts)

        try:
            index = index_of("", shape[0], lambda: _read_counts(path, shape))
            if "groups" in stored:
                groups = np.asarray(stored["groups"])
                sections = index_of("sections_", int(groups.max()) + 1 if len(groups) else 0, None)
                sections._read_counts = lambda: _grouped_counts(index.counts, groups)
                index._grouped = groups, sections
        except Exception as error:  # scipy's checks of the arrays' lengths and types
            raise IndexCorruptError(f"{path} cannot be read as a keyword index ({error}); {hint}") from None
        return index


def _grouped_counts(counts: sparse.csr_matrix, groups: np.ndarray) -> sparse.csr_matrix:
    """Row g sums the rows of `counts` whose group is g."""
    membership = sparse.csr_matrix(
        (np.ones(len(groups), dtype=np.float32), (groups, np.arange(len(groups)))),
        shape=(int(groups.max()) + 1 if len(groups) else 0, len(groups)),
    )
    return membership @ counts


def _read_counts(path: Path, shape: tuple[int, int]) -> sparse.csr_matrix:
    """The counts of the index saved at `path` (read when first asked for, see `KeywordIndex.counts`)."""
    try:
        with zipfile.ZipFile(path) as archive:
            data, indices, indptr = (_npz_array(path, archive, name) for name in ("data", "indices", "indptr"))
            return sparse.csr_matrix((data.astype(np.float32), indices, indptr), shape=shape)
    except FileNotFoundError:
        raise IndexCorruptError(f"{path} disappeared while the index was in use; {REBUILD_HINT}") from None
    except Exception as error:  # numpy, zipfile and scipy raise many types for a damaged file
        raise IndexCorruptError(f"{path} cannot be read as a keyword index ({error}); {REBUILD_HINT}") from None


# An .npz file (a zip of .npy files, as np.savez writes and np.load reads) whose uncompressed members start
# at a multiple of 64 bytes: their data does too (the .npy header pads to 64), so they can be memory-mapped.
_ALIGN = 64
_PADDING = 0xD935  # the id of zipalign's padding extra field, which readers skip


def _write_npz(path: Path, compressed: dict[str, np.ndarray], stored: dict[str, np.ndarray]) -> None:
    """Write `compressed` (deflated) and `stored` (uncompressed, aligned for memory-mapping) to one .npz file."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in [*compressed.items(), *stored.items()]:
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asanyarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            data = buffer.getvalue()
            if name in stored:
                info.compress_type = zipfile.ZIP_STORED
                # The data follows the 30-byte local header, the name, this padding field (4 bytes and the
                # padding) and, for a member over 2 GB, zipfile's zip64 field (20 bytes).
                start = archive.fp.tell() + 30 + len(info.filename.encode()) + 4 + (20 if len(data) * 1.05 > zipfile.ZIP64_LIMIT else 0)
                pad = -start % _ALIGN
                info.extra = struct.pack("<HH", _PADDING, pad) + bytes(pad)
            else:
                info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)


def _npz_array(path: Path, archive: zipfile.ZipFile, name: str) -> np.ndarray:
    """Member `name` of the .npz `archive` (at `path`): memory-mapped (read-only) when it was stored
    uncompressed at an aligned offset, read otherwise."""
    info = archive.getinfo(f"{name}.npy")
    with open(path, "rb") as file:
        file.seek(info.header_offset)
        header = file.read(30)
        if info.compress_type != zipfile.ZIP_STORED or header[:4] != b"PK\x03\x04":
            with archive.open(info) as member:
                return np.lib.format.read_array(member, allow_pickle=False)
        start = info.header_offset + 30 + sum(struct.unpack("<HH", header[26:30]))
        file.seek(start)
        version = np.lib.format.read_magic(file)
        shape, fortran, dtype = (np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0)(file)
        offset = file.tell()
    size = int(np.prod(shape)) * dtype.itemsize
    if dtype.hasobject or offset + size > start + info.file_size:
        raise ValueError(f"member {name} is not an array of its stated size")
    if size == 0 or offset % _ALIGN:
        with archive.open(info) as member:
            return np.lib.format.read_array(member, allow_pickle=False)
    return np.asarray(np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C"))


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

    def top(self, count: int, ties: int = 2, within: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, float]:
        """The texts (sorted) with about the `count` best BM25 scores, their scores and the best of them.

        Texts tied with the last are kept, up to `ties` × `count` in all. The texts are chosen by the rare
        concepts, their scores count all. Exact when no concept is common: the texts are those of the
        `count` best scores (and those tied with the last), the score the best.

        `within` (a flag per text): the texts are chosen among those flagged, and the best is still the
        whole index's, as without it (scores are relative to it, qa/search/candidates.py)."""
        if within is None:
            chosen, exact = self._top(self._rows, count, ties)
            return chosen, exact, float(exact.max()) if len(exact) else 0.0
        chosen, exact = self._top(self._rows[within[self._rows]], count, ties)
        if self.common:  # the whole index's best as `top` without `within` finds it
            _, everywhere = self._top(self._rows, count, ties)
        else:  # exact: every concept is summed in `_bm25`
            everywhere = self._bm25[self._rows]
        return chosen, exact, max(float(everywhere.max()) if len(everywhere) else 0.0, float(exact.max()) if len(exact) else 0.0)

    def _top(self, rows: np.ndarray, count: int, ties: int) -> tuple[np.ndarray, np.ndarray]:
        """`top` among `rows` (entries of `_rows`): the texts chosen and their exact scores."""
        # A text is in `_rows` at most once per rare concept, so the count × concepts best entries there hold
        # at least `count` texts: the texts of the `count` best scores (and those tied) score at least the
        # lowest of those entries. Only texts that do are sorted out (not every text matched, nor the corpus).
        scores, most = self._bm25[rows], count * len(self.rare)
        near = rows
        if len(near) > most:
            near = near[scores >= np.partition(scores, len(scores) - most)[len(scores) - most]]
        near = np.unique(near)
        chosen = near[_best(self._bm25[near], count, ties)]
        return chosen, self.scores_of(chosen)

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

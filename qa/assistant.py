"""The facade: one object that builds the index and answers questions, for the CLI and the chat page."""

import threading
import unicodedata
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from qa.answer import Answer, make_answer
from qa.config import MAX_K, Config
from qa.decision.background import Background
from qa.decision.calibration import Calibration, load_calibration
from qa.decision.relevance import judge
from qa.decision.verdict import index_calibration, model_identity, verdict_path
from qa.embeddings.model import Embedder
from qa.embeddings.second_encoder import SecondEncoder
from qa.errors import QuestionError
from qa.indexing.changes import CorpusChanges, corpus_changes
from qa.indexing.pipeline import build_index
from qa.indexing.report import BuildReport, Progress
from qa.search.fusion import with_model_weights
from qa.search.memory import index_memory, memory_stamp
from qa.search.retrieval import HybridRetriever
from qa.store.base import PassageIndex
from qa.store.folder import file_stamp, load_index
from qa.text import in_script

WARM_UP_QUESTION = "如何申请 policy subsidies？"  # both scripts: each loads dictionaries of its own


def clean_question(question: str, max_chars: int | None = None) -> str:
    """The question with control characters removed and whitespace collapsed.

    QuestionError if it is empty, or longer than `max_chars` characters (checked first: a question of
    megabytes is refused before anything reads it).
    """
    if not isinstance(question, str):
        raise QuestionError("the question must be text")
    check_length(question, max_chars)
    kept = "".join(" " if unicodedata.category(c).startswith(("C", "Z")) else c for c in question)
    cleaned = " ".join(kept.split())
    if not cleaned:
        raise QuestionError("the question is empty: type a question about the documents")
    return cleaned


def check_length(question: str, max_chars: int | None) -> None:
    """Raise QuestionError if `question` has more than `max_chars` characters (None: no limit)."""
    if max_chars is not None and len(question) > max_chars:
        raise QuestionError(
            f"the question has {len(question):,} characters; at most {max_chars:,} are accepted: ask a shorter question"
        )


def _shortened(original: str, readable: str, max_tokens: int) -> list[str]:
    if readable == original:
        return []
    return [
        f"the question was shortened to its first {len(readable):,} of {len(original):,} characters: "
        f"the model reads at most {max_tokens} tokens"
    ]


class Assistant:
    """Answers questions from the index in `config.index_dir`; loads the index and model on first use.

    `rebuild` replaces the served index only once the new one is complete and loaded, so questions
    asked during a rebuild are answered from the old index. The answers are judged by the index's own
    calibration where `qa calibrate` fitted one with this model (qa/decision/verdict.py), else by the shipped one.
    """

    def __init__(self, config: Config, embedder: Embedder | None = None):
        self.config = with_model_weights(config)  # a tuned model's own fusion weights (qa/search/fusion.py)
        self.embedder = embedder or Embedder.from_config(config)
        # The second opinion: on relevance (qa/decision/relevance.py) and on English questions' ranking (qa/search/fusion.py).
        self.second = SecondEncoder()
        self._beside = ThreadPoolExecutor(1, thread_name_prefix="second-encoder")  # see _search
        self.shipped_calibration = load_calibration()
        # The served index, its retriever, its background and the calibration that judges on it, replaced together in one assignment.
        self._served: tuple[PassageIndex, HybridRetriever, Background, Calibration] | None = None
        self._verdict_stamp = None  # verdict.json as it was when the calibration was read (qa.store.folder.file_stamp)
        self._lock = threading.Lock()

    @property
    def index(self) -> PassageIndex:
        return self._serving()[0]

    @property
    def retriever(self) -> HybridRetriever:
        """The retriever of the index now served (its `memory` is what `qa remember` fits the weight of)."""
        return self._serving()[1]

    @property
    def keywords(self):
        """The keyword index of the index now served (qa/search/keyword.py)."""
        return self._serving()[1].keywords

    @property
    def calibration(self) -> Calibration:
        """The calibration that judges answers on the index now served: its own (`qa calibrate`) or the shipped one."""
        return self._serving()[3]

    def _serving(self) -> tuple[PassageIndex, HybridRetriever, Background, Calibration]:
        """The index served, loaded on first use. A page already serving takes what an administrator's
        `qa remember` or `qa calibrate` wrote since at its next question: their files' stamps are checked here."""
        with self._lock:
            if self._served is None:
                self._served = self._load()
            index, retriever, background, _ = self._served
            if memory_stamp(self.config.index_dir) != retriever.memory_stamp:
                self._remember(retriever, index.passages)
            if file_stamp(verdict_path(self.config.index_dir)) != self._verdict_stamp:
                self._served = (index, retriever, background, self._judged_by())
            return self._served

    def _load(self) -> tuple[PassageIndex, HybridRetriever, Background, Calibration]:
        index = load_index(self.config.index_dir, model=self.config.model)
        calibration = self._judged_by()
        retriever = HybridRetriever.from_index(index, self.embedder, self.config, self.second)
        self._remember(retriever, index.passages)
        return index, retriever, Background.read(index.folder), calibration

    def _judged_by(self) -> Calibration:
        """The calibration that judges answers on the index, from its verdict.json as that file is now (qa/decision/verdict.py)."""
        self._verdict_stamp = file_stamp(verdict_path(self.config.index_dir))
        calibration, note = index_calibration(self.config.index_dir, lambda: model_identity(self.embedder), self.shipped_calibration)
        if note:  # once per verdict file: the model changed since it was fitted
            self.embedder.say(note)
        return calibration

    def _remember(self, retriever: HybridRetriever, passages) -> None:
        """Give `retriever` the index's memory of labelled questions as its files are now (qa/search/memory.py),
        so that a page already serving takes a `qa remember` run at its next question."""
        retriever.memory_stamp = memory_stamp(self.config.index_dir)
        retriever.memory, note = index_memory(self.config.index_dir, passages, lambda: model_identity(self.embedder))
        if note:  # once per memory: written with another model, or passages a rebuild no longer has
            self.embedder.say(note)

    def warm_up(self) -> None:
        """Load what answering takes, so that the first question is as quick as the next: the index, the
        question encoder (ONNX Runtime; sentence-transformers for a model that cannot be exported),
        the second encoder, jieba's and the English-Chinese dictionaries, by answering one question that
        mixes Chinese and English. A build's passage session is left for a rebuild that needs it (qa/embeddings/model.py)."""
        self.ask(WARM_UP_QUESTION)

    def ask(self, question: str, k: int | None = None, within: Sequence[str] | None = None) -> Answer:
        """Answer one question (see `ask_many`)."""
        return self.ask_many([question], k, within)[0]

    def ask_many(self, questions: list[str], k: int | None = None, within: Sequence[str] | None = None) -> list[Answer]:
        """Answer several questions with one embedding pass (one model call for all of them).

        `k`: how many passages to cite (None: `config.top_k`). `within`: None or no names for the whole
        corpus, else the collections (folders of the corpus: "民法典", "司法解释/民事") and documents (a
        source, "民法典/人格权编.md", or a name only one document has, "个体工商户条例") to search, each
        answer's `within` saying which; ScopeError for a name that names nothing (qa/search/scope.py)."""
        cleaned = [clean_question(question, self.config.max_question_chars) for question in questions]
        if k is not None and (type(k) is not int or not 1 <= k <= MAX_K):  # the page's API passes k through
            raise QuestionError(f"k, the number of passages, must be a whole number from 1 to {MAX_K}, not {k!r}")
        k = k or self.config.top_k
        _, retriever, background, calibration = self._serving()
        scope = retriever.library.scope(within)
        readable, searched = self._prepared(cleaned, background)
        found = self._search(retriever, searched, readable, k, scope)
        judgements = judge(
            readable, [hits[0] if hits else None for hits in found], retriever.keywords, background, retriever.second, calibration
        )
        return [
            make_answer(question, hits, judgement, notes=_shortened(original, question, self.embedder.max_tokens),
                        within=scope.names if scope else ())
            for original, question, hits, judgement in zip(cleaned, readable, found, judgements)
        ]

    def _prepared(self, cleaned: list[str], background: Background) -> tuple[list[str], list[str]]:
        """Of questions already cleaned, what the model reads (dense and keyword evidence both use only that, and
        the answer says so), and that in the corpus's script, as they are searched."""
        readable = [self.embedder.readable_part(question) for question in cleaned]
        return readable, [in_script(question, background.corpus_script) for question in readable]

    def question_vectors(self, questions: list[str]) -> np.ndarray:
        """The vectors `ask_many` compares `questions` with the passages by (each in the corpus's script,
        averaged with the question as written when they differ: qa/search/question.py), one row each."""
        _, retriever, background, _ = self._serving()
        cleaned = [clean_question(question, self.config.max_question_chars) for question in questions]
        readable, searched = self._prepared(cleaned, background)
        asked = retriever.read(searched, readable)
        return np.stack([question.vector for question in asked]) if asked else np.zeros((0, 0), dtype=np.float32)

    def _search(self, retriever: HybridRetriever, questions: list[str], written: list[str], k: int, scope) -> list[list]:
        """`retriever.search_many`, with the second encoder reading the questions as written (what the decision
        and English re-ranking ask it) in a thread while e5 encodes them: ONNX Runtime holds neither the GIL
        nor BLAS, so the second encoder's ~3 ms a question is hidden. It is waited for before the search,
        whose numpy products set BLAS threads through threadpoolctl as the second encoder does, which
        OpenBLAS does not support from two threads at once. Here, not in HybridRetriever.read: a build reads
        its background questions through a retriever whose second encoder writes the build's SQLite embedding
        cache, which only the thread that opened it may use (tried: every build failed)."""
        if not retriever.passages or retriever.second is None:
            return retriever.search_many(questions, k, written, within=scope)
        beside = self._beside.submit(retriever.second.questions, written)
        try:
            asked = retriever.read(questions, written)
        finally:
            beside.result()
        return retriever.search_read(asked, k, scope)

    def resolve_within(self, within: Sequence[str] | None) -> tuple[str, ...]:
        """The collections and documents `within` names (as `ask_many` takes them), as answers will say them
        (`Answer.within`): a name only one document has becomes its source. ScopeError as in `ask_many`."""
        scope = self._serving()[1].library.scope(within)
        return scope.names if scope else ()

    def collections(self) -> list[tuple[str, int]]:
        """The collections of the served index (the corpus's folders, nested ones too) and how many documents
        each holds, its subfolders' included, sorted by name; read from the index once per build."""
        return list(self._serving()[1].library.collections)

    def documents(self) -> list[str]:
        """The documents of the served index by source (their paths in the corpus), sorted."""
        return list(self._serving()[1].library.documents)

    def rebuild(self, progress: Progress | None = None) -> BuildReport:
        report = build_index(self.config, self.embedder, progress)
        fresh = self._load()
        with self._lock:
            self._served = fresh  # one assignment: a question sees the old index or the new one
        return report

    def changes(self) -> CorpusChanges:
        return corpus_changes(self.config)

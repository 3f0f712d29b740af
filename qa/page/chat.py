"""The chat page's service, shared by all its sessions: answers a conversation's turns, records
feedback, and reports on the index.

It composes the rooms that do the work: qa/page/conversation.py (follow-ups, what a turn searches),
qa/page/highlight.py (the sentences that answer), qa/page/render.py (the HTML), qa/page/scope.py (the
filter), qa/documents/samples.py (the sample questions), qa/feedback.py (the log) and
qa/page/background_rebuild.py (the index panel and rebuilds). The page's events (qa/page/events.py) call it.
"""

import logging
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, replace

from qa.assistant import Assistant
from qa.compose.composer import Composer, Composition, worth_composing
from qa.decision.outcomes import NOT_FOUND
from qa.documents.samples import questions_from_headings, read_questions_file
from qa.errors import FeedbackError, QAError
from qa.feedback import record_feedback
from qa.page.background_rebuild import IndexMonitor, IndexStatus
from qa.page.conversation import Turn, plan_turn
from qa.page.highlight import Highlighter
from qa.page.render import COMPOSED_SLOT, INTERNAL_ERROR, SectionTexts, render_answer, render_composed, render_error
from qa.page.scope import render_scope
from qa.text import language

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CorpusView:
    """What the page shows of the served corpus: its collections with their document counts, its documents
    (sources, sorted) and its sample questions."""

    collections: tuple[tuple[str, int], ...] = ()
    documents: tuple[str, ...] = ()
    samples: tuple[str, ...] = ()


class Chat:
    """The page's service: answers turns, records feedback, tracks the index.

    `auto_rebuild`: start a rebuild by itself when the corpus changed since the index was built; `composer`:
    the language model that writes an answer above the cards (None: the page quotes the passages only).
    """

    def __init__(self, assistant: Assistant, highlighter: Highlighter | None = None, auto_rebuild: bool = False,
                 composer: Composer | None = None):
        self.assistant = assistant
        self.composer = composer
        self.highlighter = highlighter or Highlighter(assistant.embedder, lambda: assistant.keywords, assistant.config)
        self.index_monitor = IndexMonitor(assistant, auto_rebuild)
        self.rebuilds = self.index_monitor.rebuilds
        self._sections: tuple[object, SectionTexts] | None = None
        self._heading_samples: tuple[object, int, tuple[str, ...]] | None = None
        self._lock = threading.Lock()

    def reply(self, question: str, history: list[Turn], within: tuple[str, ...] = ()) -> Turn:
        """Answer `question` after `history`, searching only `within` (collections and documents; () for the
        whole corpus): the new turn, its reply rendered in `shown` (an error message if it failed, as when
        `within` names something the index does not hold)."""
        turn = plan_turn(question, history, within)
        try:
            answer = self.assistant.ask(turn.searched, within=turn.within or None)
            found = answer.outcome != NOT_FOUND
            # The question as retrieval read it: the highlighter embeds and tokenizes nothing of it again.
            highlights = self.highlighter.highlight(answer.asked or answer.question, answer.passages) if found else None
            sections = self.sections()
        except QAError as error:
            return replace(turn, error=str(error), shown=render_error(str(error), turn.question))
        except Exception:  # a bug must not leave the question hanging, nor show a traceback
            log.error("answering %r failed:\n%s", turn.searched, traceback.format_exc())
            return replace(turn, error=INTERNAL_ERROR, shown=render_error(INTERNAL_ERROR, turn.question))
        turn = replace(turn, answer=answer)
        shown = render_scope(answer.within, language(turn.question)) + render_answer(answer, turn, highlights, sections)
        if self.composer is None or not worth_composing(answer):  # no written answer will come: the page as without one
            shown = shown.replace(COMPOSED_SLOT, "")
        return replace(turn, shown=shown)

    def compose(self, turn: Turn) -> Iterator[Turn]:
        """`turn` with its written answer as it comes, then checked (or a note why there is none); nothing
        when the page has no composer or the answer is not worth composing ("not found", an error)."""
        if self.composer is None or turn.answer is None or not worth_composing(turn.answer):
            return
        question = turn.question
        yield self._with_composition(turn, Composition("", model=self.composer.settings.llm_model or "", done=False), question)
        try:
            for composition in self.composer.stream(turn.answer):
                yield self._with_composition(turn, composition, question)
        except Exception:  # a bug must not take the extractive answer away: it stays, the log says why
            log.error("composing an answer to %r failed:\n%s", turn.searched, traceback.format_exc())
            yield self._with_composition(turn, Composition("", note=INTERNAL_ERROR), question)

    @staticmethod
    def _with_composition(turn: Turn, composition: Composition, question: str) -> Turn:
        shown = turn.shown.replace(COMPOSED_SLOT, render_composed(composition, question), 1)
        answer = replace(turn.answer, composed=composition) if composition.done else turn.answer
        return replace(turn, answer=answer, shown=shown)

    def corpus_view(self, samples: int) -> CorpusView:
        """The served corpus's collections and documents, and up to `samples` sample questions: those of the
        corpus's .questions.txt, else drawn from its headings (qa/documents/samples.py). An index that
        cannot be loaded shows nothing (the index panel says why)."""
        written = read_questions_file(self.assistant.config.corpus_dir)
        try:
            collections, documents = self.assistant.collections(), self.assistant.documents()
            questions = written[:samples] if written is not None else self._questions_from_headings(samples)
        except QAError as error:
            log.warning("the page shows no documents: %s", error)
            return CorpusView(samples=tuple(written[:samples]) if written else ())
        return CorpusView(tuple(collections), tuple(documents), tuple(questions))

    def _questions_from_headings(self, count: int) -> tuple[str, ...]:
        """Sample questions from the headings of the index now served, drawn once per index."""
        index = self.assistant.index
        with self._lock:
            if self._heading_samples is None or self._heading_samples[0] is not index or self._heading_samples[1] != count:
                headings = ((p.source, p.path or p.section) for p in index.passages)  # the innermost heading: its last part
                self._heading_samples = (index, count, tuple(questions_from_headings(headings, count)))
            return self._heading_samples[2]

    def sections(self) -> SectionTexts:
        """Section texts of the index now served (rebuilt after the index is replaced)."""
        index = self.assistant.index
        with self._lock:
            if self._sections is None or self._sections[0] is not index:
                self._sections = (index, SectionTexts(index.passages))
            return self._sections[1]

    def feedback(self, turn: Turn, liked: bool | None) -> dict:
        """Record a thumbs up (True), down (False) or a withdrawn vote (None) for `turn`; returns the record."""
        if turn.answer is None:
            raise FeedbackError("there is no answer to rate for this message")
        return record_feedback(
            self.assistant.config.feedback_file,
            {True: "up", False: "down", None: "cleared"}[liked],
            turn.question,
            turn.searched,
            turn.answer,
        )

    def status(self, max_age: float = 5.0) -> IndexStatus:
        """The index panel's facts, the corpus checked at most every `max_age` seconds (IndexMonitor.status)."""
        return self.index_monitor.status(max_age)

    def watch(self, interval: float = 10.0) -> threading.Thread:
        """Check the corpus every `interval` seconds in a background thread (IndexMonitor.watch)."""
        return self.index_monitor.watch(interval)

"""The chat page's service, shared by all its sessions: answers a conversation's turns, records
feedback, and reports on the index.

It composes the rooms that do the work: qa/page/conversation.py (follow-ups, what a turn searches),
qa/page/highlight.py (the sentences that answer), qa/page/render.py (the HTML), qa/feedback.py (the log)
and qa/page/background_rebuild.py (the index panel and rebuilds). The page's events (qa/page/events.py) call it.
"""

import logging
import threading
import traceback
from dataclasses import replace

from qa.assistant import Assistant
from qa.decision.outcomes import NOT_FOUND
from qa.errors import FeedbackError, QAError
from qa.feedback import record_feedback
from qa.page.background_rebuild import IndexMonitor, IndexStatus
from qa.page.conversation import Turn, plan_turn
from qa.page.highlight import Highlighter
from qa.page.render import INTERNAL_ERROR, SectionTexts, render_answer, render_error

log = logging.getLogger(__name__)


class Chat:
    """The page's service: answers turns, records feedback, tracks the index.

    `auto_rebuild`: start a rebuild by itself when the corpus changed since the index was built.
    """

    def __init__(self, assistant: Assistant, highlighter: Highlighter | None = None, auto_rebuild: bool = False):
        self.assistant = assistant
        self.highlighter = highlighter or Highlighter(assistant.embedder, lambda: assistant.keywords, assistant.config)
        self.index_monitor = IndexMonitor(assistant, auto_rebuild)
        self.rebuilds = self.index_monitor.rebuilds
        self._sections: tuple[object, SectionTexts] | None = None
        self._lock = threading.Lock()

    def reply(self, question: str, history: list[Turn]) -> Turn:
        """Answer `question` after `history`: the new turn, its reply rendered in `shown` (an error message if it failed)."""
        turn = plan_turn(question, history)
        try:
            answer = self.assistant.ask(turn.searched)
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
        return replace(turn, shown=render_answer(answer, turn, highlights, sections))

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

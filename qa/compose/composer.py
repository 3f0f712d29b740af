"""A written answer from the cited passages, by the language model the user runs, every sentence checked.

    Composer.stream(answer)   the answer as it comes (drafts), then the checked one; or a note that says
                              why there is none (the endpoint was down, slow, refused, or wrote nothing)

Only an answered or uncertain answer is sent, and only its cards ("not found" sends nothing: there is
nothing to answer from). What is sent where: the question as searched and the cards' text and citations,
to QA_LLM_URL, nothing else. A reasoning model's thinking (<think>…</think>) is left out of what is shown
and checked. Failure is ordinary: the extractive answer is always there, and the composer only adds to it.
"""

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

from qa.answer import Answer
from qa.compose.check import CheckedSentence, CitationChecker, supported_share
from qa.compose.endpoint import endpoint_model, stream_chat
from qa.compose.prompt import chat_messages
from qa.config import ComposerSettings
from qa.decision.outcomes import NOT_FOUND
from qa.errors import ComposeError

DRAFT_INTERVAL = 0.15  # seconds between two drafts shown while the answer comes: the page re-renders each
_THINKING = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL)


@dataclass(frozen=True)
class Composition:
    """A written answer: its text, its sentences as checked (empty while it is still coming), the model that
    wrote it, and a note instead of text when there is none."""

    text: str
    sentences: tuple[CheckedSentence, ...] = ()
    model: str = ""
    done: bool = True  # False for a draft: the answer is still coming and nothing is checked yet
    note: str = ""  # why there is no written answer (then `text` is "")
    seconds: float = 0.0  # from asking to the checked answer

    @property
    def supported_share(self) -> float | None:
        return supported_share(list(self.sentences))

    @property
    def unsupported(self) -> list[CheckedSentence]:
        return [sentence for sentence in self.sentences if sentence.supported is False]

    def to_json(self) -> dict:
        """The `composed` field of `qa ask --json` and the page's API."""
        return {
            "text": self.text, "model": self.model, "note": self.note, "seconds": round(self.seconds, 2),
            "supported_share": self.supported_share, "sentences": [sentence.to_json() for sentence in self.sentences],
        }


def shown_text(written: str) -> str:
    """What of the model's output a reader sees: without its thinking, even an unfinished <think> block."""
    return _THINKING.sub("", written).strip()


def worth_composing(answer: Answer) -> bool:
    """An answer is sent only when it is answered or uncertain and has cards to answer from."""
    return answer.outcome != NOT_FOUND and bool(answer.passages)


class Composer:
    """Writes answers through the endpoint in `settings` and checks them with `checker`."""

    def __init__(self, settings: ComposerSettings, checker: CitationChecker):
        if not settings.enabled:
            raise ComposeError("no language model is set: set QA_LLM_URL to an OpenAI-compatible API (see README, Written answers)")
        self.settings = settings
        self.checker = checker
        self._model: str | None = settings.llm_model

    @classmethod
    def for_assistant(cls, settings: ComposerSettings, assistant) -> "Composer":
        """A composer whose check uses `assistant`'s model and the keyword index it serves (after a rebuild too)."""
        return cls(settings, CitationChecker(assistant.embedder, lambda: assistant.keywords))

    def stream(self, answer: Answer) -> Iterator[Composition]:
        """Drafts of the written answer for `answer` as it comes (done=False), then the checked answer, or a
        Composition with a note when the endpoint fails or the timeout passes; nothing for an answer not
        worth composing."""
        if not worth_composing(answer):
            return
        started = time.monotonic()
        deadline = started + self.settings.llm_timeout
        written, shown_at = "", 0.0
        try:
            if self._model is None:
                self._model = endpoint_model(self.settings, max(0.1, deadline - time.monotonic()))  # within the same deadline
            for piece in stream_chat(self.settings, self._model, chat_messages(answer.question, answer.passages), deadline):
                written += piece
                if time.monotonic() - shown_at >= DRAFT_INTERVAL and shown_text(written):
                    shown_at = time.monotonic()
                    yield Composition(shown_text(written), model=self._model, done=False)
            text = shown_text(written)
            if not text:
                raise ComposeError(f"the language model at {self.settings.llm_url} wrote nothing")
        except ComposeError as error:
            yield Composition("", model=self._model or "", note=str(error), seconds=time.monotonic() - started)
            return
        sentences = tuple(self.checker.check(text, answer.passages))
        yield Composition(text, sentences, self._model, seconds=time.monotonic() - started)

    def compose(self, answer: Answer) -> Composition | None:
        """The checked written answer for `answer` (or the note why there is none); None when not worth composing."""
        last = None
        for last in self.stream(answer):
            pass
        return last

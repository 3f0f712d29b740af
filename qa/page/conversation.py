"""A conversation on the chat page: the turns, which questions are follow-ups, and what each one searches.

A short question that refers back ("具体是怎么做的？", "why?") is searched together with the
conversation's topic, the last question that stood alone. Each turn keeps the collections and
documents it was limited to (the page's filter, which stays set from question to question, so a
follow-up searches where its topic was searched unless the visitor changes it). The language of a question (Chinese when
it contains Chinese characters, English otherwise) decides the language of the page's labels.
"""

import re
from dataclasses import dataclass

from qa.answer import Answer
from qa.text import language

# A short question that refers back ("这", "it") or continues ("具体", "what about") cannot stand alone.
_ZH_REFERENCES = ("这", "那", "它", "其", "该", "此", "他们", "她们", "上述", "前面", "刚才", "上面")
_ZH_OPENERS = ("具体", "还有", "另外", "那么", "而且", "此外", "然后", "为什么", "为何", "怎么做", "如何做", "效果", "结果", "和", "与", "跟")
_EN_REFERENCES = frozenset("it its this that these those they them their there such he she his her".split())
_EN_OPENERS = ("and ", "but ", "what about", "how about", "why", "how so", "more", "what else", "also", "then", "so ")
_PUNCTUATION = re.compile(r"[\s\W_]+", re.UNICODE)


def is_follow_up(question: str) -> bool:
    """Whether `question` is too short and referring to stand alone (e.g. "具体是怎么做的？", "why?")."""
    if language(question) == "zh":
        core = _PUNCTUATION.sub("", question)
        if len(core) <= 4:
            return True
        return len(core) <= 14 and (
            core.startswith(_ZH_OPENERS) or any(word in core for word in _ZH_REFERENCES) or core.endswith("呢")
        )
    lowered = question.lower().strip()
    words = re.findall(r"[a-z0-9']+", lowered)
    if len(words) <= 2:
        return True
    return len(words) <= 8 and (lowered.startswith(_EN_OPENERS) or any(word in _EN_REFERENCES for word in words))


@dataclass(frozen=True)
class Turn:
    """One question of a conversation: as typed, as searched, the standalone question it builds on, and the
    collections and documents it was limited to (`within`; () for the whole corpus)."""

    question: str
    searched: str
    topic: str
    answer: Answer | None = None
    error: str | None = None
    shown: str = ""  # the reply as rendered in the chat (HTML)
    within: tuple[str, ...] = ()

    @property
    def combined(self) -> bool:
        return self.searched != self.question


def plan_turn(question: str, history: list[Turn], within: tuple[str, ...] = ()) -> Turn:
    """The turn for `question` after `history`, limited to `within`: a follow-up is searched together with
    the current topic.

    The topic is the last question that stood alone, so a chain of follow-ups ("具体呢？", "效果呢？")
    keeps referring to it rather than to each other.
    """
    question = " ".join(question.split())
    previous = next((turn for turn in reversed(history) if turn.error is None), None)
    if previous is not None and is_follow_up(question):
        return Turn(question=question, searched=f"{previous.topic} {question}", topic=previous.topic, within=tuple(within))
    return Turn(question=question, searched=question, topic=question, within=tuple(within))

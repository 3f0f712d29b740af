"""Cut documents into passages: whole sentences, bounded in length, each with its exact offsets.

A passage never cuts a sentence. Sentences end at 。！？； (and ! ? ; or a '.' before a space) and at
line breaks; closing quotes and brackets stay with the sentence they close. A sentence longer than
the limit becomes a passage of its own rather than being cut. In a table's section each line is a
row (`项目：…；指标：…`) and one passage, whatever its length, so a cell is cited with its row.
"""

import re
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import PurePosixPath

from qa.documents.corpus import Document

_SENTENCE = re.compile(
    r"[^\n]*?(?:[。！？；!?;…]+[”’」』）)】\]\"']*|\.(?=\s)|\n|$)",
)


@dataclass(frozen=True)
class Passage:
    """A citable span [start, end) of `source`'s text, under the heading `section`, on page `page`.

    `page` is the 1-based page (PDF page, slide) the passage starts on; None for sources without
    pages (Markdown, text, Word, HTML) and in indexes built before pages were recorded.
    """

    id: int
    source: str
    section: str
    start: int
    end: int
    text: str
    page: int | None = None

    def embedding_text(self) -> str:
        """What the model reads: the section title gives a short passage its context."""
        return f"{self.section}\n{self.text}" if self.section else self.text

    def keyword_text(self) -> str:
        """What the keyword index reads: the document's name, then what the model reads. Words that name
        the whole document (浙江 in a file about Zhejiang's cases) then count for all its sections alike,
        instead of pointing at the one section that happens to repeat them (more questions of
        eval/seed_in_scope.tsv find their case first). The model does not read the name: there it matched
        more questions to the wrong case."""
        return f"{document_name(self.source)}\n{self.embedding_text()}"

    def to_dict(self) -> dict:
        """The passage's fields by name: what every store saves (`from_dict` reads it back)."""
        return dict(vars(self))  # dataclasses.asdict's deep copy costs a large rebuild seconds for no gain here

    @classmethod
    def from_dict(cls, fields: dict) -> "Passage":
        """The passage `to_dict` gave; TypeError for a name that is not one of its fields."""
        return cls(**fields)


def document_name(source: str) -> str:
    """A source's file name without its folders and suffix: "分册/报告.pdf" → "报告"."""
    return PurePosixPath(source).stem


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Spans (start, end) of the sentences in text[start:end], trimmed of surrounding whitespace."""
    end = len(text) if end is None else end
    spans = []
    for match in _SENTENCE.finditer(text, start, end):
        spans.extend(_trimmed(text, *match.span()))
    return spans


def _trimmed(text: str, s: int, e: int) -> list[tuple[int, int]]:
    """[(s, e)] moved inwards past whitespace at both ends; [] if nothing else is left."""
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    return [(s, e)] if s < e else []


def make_passages(documents: list[Document], max_chars: int, first_id: int = 0) -> list[Passage]:
    """Group consecutive sentences of each section into passages of at most `max_chars` characters."""
    passages: list[Passage] = []
    for document in documents:
        for section in document.sections:
            if section.rows:
                spans = _lines(document.text, section.start, section.end)
            else:
                spans = _group(split_sentences(document.text, section.start, section.end), max_chars)
            for s, e in spans:
                passages.append(
                    Passage(
                        id=first_id + len(passages),
                        source=document.source,
                        section=section.heading,
                        start=s,
                        end=e,
                        text=document.text[s:e],
                        page=page_at(document.page_starts, s),
                    )
                )
    return passages


def page_at(page_starts: list[int] | None, offset: int) -> int | None:
    """The 1-based page holding character `offset`, given where each page starts; None without pages.

    An empty page starts where the next one does, so the last page starting at or before the
    offset is the one that holds it."""
    if not page_starts:
        return None
    return max(1, bisect_right(page_starts, offset))


def _lines(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Spans of the non-blank lines of text[start:end], trimmed."""
    spans = []
    for match in re.finditer(r"[^\n]+", text[start:end]):
        spans.extend(_trimmed(text, start + match.start(), start + match.end()))
    return spans


def _group(sentences: list[tuple[int, int]], max_chars: int) -> list[tuple[int, int]]:
    groups: list[tuple[int, int]] = []
    for s, e in sentences:
        if groups and e - groups[-1][0] <= max_chars:
            groups[-1] = (groups[-1][0], e)
        else:
            groups.append((s, e))
    return groups

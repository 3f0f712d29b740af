"""Cut documents into passages: whole units, or whole sentences, bounded in length, each with its exact offsets.

A passage never spans two units of a document's structure (articles 第X条, numbered items, 问/答 pairs:
qa/documents/structure.py): a unit up to `max_unit_chars` is one passage, a longer one is cut between its
paragraphs (款), or between sentences where one paragraph is longer still, and every part keeps the
unit's label. Text outside any unit is packed by sentences up to `max_passage_chars`.

A passage never cuts a sentence. Sentences end at 。！？； (and ! ? ; or a '.' before a space) and at
line breaks; closing quotes and brackets stay with the sentence they close. A sentence longer than
the limit becomes a passage of its own rather than being cut. In a table's section each line is a
row (`项目：…；指标：…`) and one passage, whatever its length, so a cell is cited with its row.
"""

import re
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import PurePosixPath

from qa.documents.corpus import Document, Section
from qa.documents.structure import units

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
    label: str = ""  # the unit it belongs to, as people cite it: "第一千零二十五条", "（一）指导思想"; "" for none
    path: str = ""  # the headings it sits under, outermost first, joined by PATH_SEPARATOR
    title: str = ""  # its document's title ("" in indexes built before titles were read)
    date: str = ""  # its document's version date, YYYY-MM-DD, or ""

    def embedding_text(self) -> str:
        """What the model reads: the section title gives a short passage its context; a unit's passage
        reads its document's title, headings and label, so that an article's later paragraphs still say
        which law and article they belong to."""
        if self.label:
            head = " ".join(part for part in (self.title, self.path.replace(PATH_SEPARATOR, " ")) if part)
            label = "" if self.text.startswith(self.label) else f"{self.label} "
            return f"{head}\n{label}{self.text}" if head else f"{label}{self.text}"
        return f"{self.section}\n{self.text}" if self.section else self.text

    def keyword_text(self) -> str:
        """What the keyword index reads: the document's name, then what the model reads. Words that name
        the whole document (浙江 in a file about Zhejiang's cases) then count for all its sections alike,
        instead of pointing at the one section that happens to repeat them (more questions of
        eval/seed_in_scope.tsv find their case first). The model does not read the name of a passage
        outside any unit: there it matched more questions to the wrong case."""
        name = self.title or document_name(self.source)
        if self.label or name == self.section:
            return self.embedding_text()
        return f"{name}\n{self.embedding_text()}"

    def citation(self) -> str:
        """How people cite it: 《中华人民共和国民法典》 人格权编 › 第五章 名誉权和荣誉权 › 第一千零二十五条."""
        where = PATH_SEPARATOR.join(part for part in (self.path, self.label) if part)
        title = f"《{self.title}》" if self.title else document_name(self.source)
        return f"{title} {where}" if where else title

    def to_dict(self) -> dict:
        """The passage's fields by name: what every store saves (`from_dict` reads it back)."""
        return dict(vars(self))  # dataclasses.asdict's deep copy costs a large rebuild seconds for no gain here

    @classmethod
    def from_dict(cls, fields: dict) -> "Passage":
        """The passage `to_dict` gave; TypeError for a name that is not one of its fields."""
        return cls(**fields)


PATH_SEPARATOR = " › "


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


def make_passages(documents: list[Document], max_chars: int, first_id: int = 0, max_unit_chars: int | None = None) -> list[Passage]:
    """The passages of each section: its units whole up to `max_unit_chars` (default `max_chars`), cut
    between paragraphs beyond; text outside units as consecutive sentences up to `max_chars`."""
    max_unit_chars = max_unit_chars or max_chars
    passages: list[Passage] = []
    for document in documents:
        for section in document.sections:
            for label, headings, spans in _section_spans(document.text, section, max_chars, max_unit_chars):
                path = PATH_SEPARATOR.join((*section.path, *headings))
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
                            label=label,
                            path=path,
                            title=document.title,
                            date=document.date,
                        )
                    )
    return passages


def _section_spans(text: str, section: Section, max_chars: int, max_unit_chars: int):
    """(label, headings, spans) of each unit of a section, in order; a table's rows are one span each."""
    if section.rows:
        yield "", (), _lines(text, section.start, section.end)
        return
    for unit in units(text, section.start, section.end):
        if not unit.label:
            yield "", unit.headings, _group(split_sentences(text, unit.start, unit.end), max_chars)
            continue
        paragraphs = []
        for s, e in _lines(text, unit.start, unit.end):
            # A paragraph longer than the limit is cut between its sentences.
            paragraphs += [(s, e)] if e - s <= max_unit_chars else _group(split_sentences(text, s, e), max_unit_chars)
        yield unit.label, unit.headings, _group(paragraphs, max_unit_chars)


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

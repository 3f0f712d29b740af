"""The structure of a document's text: its title and date, the headings that nest, and the units it cites by.

People cite a law as 《中华人民共和国民法典》第一千零二十五条 and a policy document by its numbered items,
so a passage never spans two of those units (qa/passages.py). A unit opens at a line starting with

    第X条 (第X条之一)                an article                       rank 0
    问：                             a question, its 答： included     rank 0
    一、  （一）  1.  (1)  ①         numbered items                   ranks 1 to 5

and runs until the next line that opens a unit of the same or a higher rank: an article's items
（一）（二） and its further paragraphs (款) stay in it. A numbered line that is short and ends no sentence
("一、总体要求", "（二）存在加班事实") is a heading of what follows, not a unit. Lines 第X编/分编/章/节 are
headings wherever they stand (a PDF or Word file without heading styles), nested below the file's own.

All of it is read from the text, whatever the format, never from where a file lies in the corpus.
"""

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from qa.documents.readers import Heading

_NUMERAL = "零〇一二三四五六七八九十百千万两"
_ARTICLE = re.compile(rf"[ \t　]*(第[{_NUMERAL}\d]+条(?:之[{_NUMERAL}]+)?)(?:[ \t　：:]|$)")
_QUESTION = re.compile(r"[ \t　]*(?:\d{1,3}[.．、]\s*)?(?:【问】|问[：:])")
_ITEMS = (  # rank, pattern of the item's number at the start of a line
    (1, re.compile(r"[ \t　]*([一二三四五六七八九十]{1,3}、)")),
    (2, re.compile(r"[ \t　]*([（(][一二三四五六七八九十]{1,3}[）)])")),
    (3, re.compile(r"[ \t　]*(\d{1,3}[.．、])(?![\d.．])")),
    (4, re.compile(r"[ \t　]*([（(]\d{1,3}[）)])")),
    (5, re.compile(r"[ \t　]*([①②③④⑤⑥⑦⑧⑨⑩⑪⑫⑬⑭⑮⑯⑰⑱⑲⑳])")),
)
_PART = re.compile(rf"[ \t　]*第[{_NUMERAL}\d]+(分编|编|章|节)(?:[ \t　]|$)")
# Below any heading level a file's own markup gives (Markdown has 6), in the order parts nest.
_PART_LEVELS = {"编": 11, "分编": 12, "章": 13, "节": 14}
_ENDS_SENTENCE = re.compile(r"[。！？；;!?：:，,]")
_SHORT_HEADING = 40  # a numbered line longer than this is an item, however it ends
# An item's lead words, shown in its label when punctuation ends them soon: （一）指导思想。…
_LEAD = re.compile(r"[^。；;，,：:！？!?\s]{1,16}(?=[。；;，,：:！？!?\s])")
_ISO_DATE = re.compile(r"(?<!\d)((?:19|20)\d\d)-(\d\d)-(\d\d)(?!\d)")
_CHINESE_DATE = re.compile(r"((?:19|20)\d\d)\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日")
_PREAMBLE = 1000  # a date is looked for this far into the text, where laws and notices state theirs


@dataclass(frozen=True)
class Unit:
    """A citable unit [start, end) of a section's text: `label` as people cite it ("第十条", "（一）指导思想",
    "问：…"; "" for text outside any unit), `headings`: the numbered headings above it within the section."""

    label: str
    start: int
    end: int
    headings: tuple[str, ...] = ()


def part_headings(text: str, headings: list[Heading]) -> list[Heading]:
    """`headings` with the lines 第X编/分编/章/节 that are not headings already added, in text order.

    Such a line is a heading only when short and ending no sentence: "第三章 合同的变更和转让", not
    "第三章规定的…"."""
    taken = {(heading.start, heading.end) for heading in headings}
    found = []
    for match in re.finditer(r"[^\n]+", text):
        line = match.group()
        part = _PART.match(line)
        if not part or len(line.strip()) > _SHORT_HEADING or _ENDS_SENTENCE.search(line.strip()[-1]):
            continue
        if any(start <= match.start() < end for start, end in taken):
            continue
        found.append(Heading(line.strip(), match.start(), match.end(), _PART_LEVELS[part.group(1)]))
    return sorted([*headings, *found], key=lambda heading: heading.start)


def heading_paths(headings: list[Heading], title: Heading | None) -> list[tuple[str, ...]]:
    """For each heading, the headings it sits under and itself, outermost first, the title left out: a
    heading closes the open ones of its level and deeper."""
    paths, open_ = [], []
    for heading in headings:
        if heading is title:
            paths.append(())
            continue
        open_ = [(level, name) for level, name in open_ if level < heading.level]
        open_.append((heading.level, " ".join(heading.title.split())))
        paths.append(tuple(name for _, name in open_))
    return paths


def title_heading(text: str, headings: list[Heading]) -> Heading | None:
    """The heading that names the whole document: the first one, when no text comes before it and
    nothing outranks it."""
    if not headings or text[: headings[0].start].strip():
        return None
    first = headings[0]
    return first if all(first.level <= heading.level for heading in headings) else None


def fallback_title(source: str) -> str:
    """A title from the file name: its stem without a version date, "个体工商户条例(2016-02-06)" → "个体工商户条例"."""
    stem = PurePosixPath(source).stem
    return re.sub(r"\s*[(（]\s*(?:19|20)\d\d-\d\d-\d\d\s*[)）]\s*$", "", stem).strip() or stem


def document_date(source: str, text: str) -> str:
    """The document's version date as YYYY-MM-DD: from its file name ("个体工商户条例(2016-02-06).md"),
    else the latest date its opening states (enacted, amended, in force); "" when neither gives one."""
    named = _ISO_DATE.search(PurePosixPath(source).name)
    if named:
        return "-".join(named.groups())
    dates = [
        f"{year}-{int(month):02d}-{int(day):02d}"
        for year, month, day in _CHINESE_DATE.findall(text[:_PREAMBLE])
        if 1 <= int(month) <= 12 and 1 <= int(day) <= 31
    ]
    return max(dates, default="")


def units(text: str, start: int, end: int) -> list[Unit]:
    """The units of text[start:end], in order, covering every non-blank line of it.

    A line opening a unit of rank r closes the open unit if that one's rank is r or deeper; otherwise
    it continues it (an article's items). Text before the first unit, and between units and headings, is a
    unit with the label "" (packed by sentences, as text without structure is)."""
    found: list[Unit] = []
    label, rank, opened = "", None, start
    headings: list[tuple[int, str]] = []  # numbered headings open in this section: (rank, line)

    def close(at: int) -> None:
        if text[opened:at].strip():
            found.append(Unit(label, opened, at, tuple(line for _, line in headings)))

    for match in re.finditer(r"[^\n]+", text[start:end]):
        line, at = match.group(), start + match.start()
        opening = _opening(line)
        if opening is None:
            continue
        new_rank, new_label = opening
        if rank == 0 and new_rank > 0:
            continue  # an article's or an answer's items and paragraphs are part of it
        if new_rank > 0 and _is_heading(line):
            close(at)
            headings = [(r, name) for r, name in headings if r < new_rank] + [(new_rank, line.strip())]
            label, rank, opened = "", None, at + len(line)
            continue
        if rank is not None and new_rank > rank:
            continue  # a deeper item inside the open one
        close(at)
        label, rank, opened = new_label, new_rank, at
        headings = [(r, name) for r, name in headings if r < new_rank]
    close(end)
    return found


def _opening(line: str) -> tuple[int, str] | None:
    """(rank, label) of the unit `line` opens, or None."""
    article = _ARTICLE.match(line)
    if article:
        return 0, article.group(1)
    if _QUESTION.match(line):
        question = line.strip()
        return 0, question if len(question) <= 30 else question[:29] + "…"
    for rank, pattern in _ITEMS:
        item = pattern.match(line)
        if item:
            lead = _LEAD.match(line, item.end())
            return rank, item.group(1) + (lead.group() if lead else "")
    return None


def _is_heading(line: str) -> bool:
    """A numbered line that heads what follows: short, and ending no sentence."""
    line = line.strip()
    return len(line) <= _SHORT_HEADING and not _ENDS_SENTENCE.search(line[-1])

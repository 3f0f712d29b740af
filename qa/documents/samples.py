"""The chat page's sample questions, from the corpus itself: the questions written for it in the file
`.questions.txt` of the corpus folder, or else questions drawn from its documents' headings.

`.questions.txt` holds one question a line (UTF-8; blank lines and lines starting with `#` are left
out), shown in the order written. Its name starts with a dot, so the corpus reader skips it (it is
not indexed as a document), the page never serves it and an upload cannot overwrite it; it travels
with the corpus folder. An empty file shows no samples.

Without it, the questions come from the headings the passages sit under: one heading of a document
per collection (the folder a document is in) in turn, chapter numbers dropped ("第五章 名誉权和荣誉权"
→ 关于「名誉权和荣誉权」有哪些规定？), generic ones (总则, 附则, 一般规定) and article labels left out.
Which collections, documents and headings is decided by a hash of their names, so the same corpus
always shows the same samples, spread over its collections rather than the first few by name.
"""

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

QUESTIONS_FILE = ".questions.txt"
MAX_QUESTION_CHARS = 200  # a longer line is not a sample question: it is left out

# Headings that name a part every law has: as a question they ask about no document in particular.
GENERIC_HEADINGS = frozenset(
    "总则 附则 一般规定 其他规定 其他 附录 附件 目录 前言 序言 引言 说明 概述 正文 释义 罚则 法律责任 基本原则 "
    "用语含义 名词解释 contents introduction preface appendix general provisions supplementary provisions".split(" ")
)
_NUMERAL = "一二三四五六七八九十百千万零〇两0-9０-９"
# A heading's own number: 第五章, 第一节, 一、, （一）, 1., 1.2, (1), A.
_NUMBER = re.compile(
    rf"^\s*(?:第[{_NUMERAL}]+[编章节部分篇卷款项目]|[{_NUMERAL}]+[、.．)）]|[（(][{_NUMERAL}]+[)）]|\d+(?:\.\d+)*\s|[A-Za-z][.)]\s)\s*"
)
_ARTICLE = re.compile(rf"^第[{_NUMERAL}]+条")  # an article's label names no topic
_PATH_SEPARATOR = re.compile(r"\s*[›>]\s*")  # a heading path: 第四编 人格权 › 第五章 名誉权和荣誉权
_CJK = re.compile(r"[\u3400-\u9fff]")
_DATE_IN_NAME = re.compile(r"\s*[（(][^()（）]*[)）]\s*$")  # 建筑法(2019-04-23) -> 建筑法


def read_questions_file(corpus_dir: Path) -> list[str] | None:
    """The questions of `corpus_dir`/.questions.txt in their order, or None when there is no such file
    (or it cannot be read as text)."""
    path = Path(corpus_dir) / QUESTIONS_FILE
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return None
    lines = (" ".join(line.split()) for line in text.splitlines())
    return list(dict.fromkeys(line for line in lines if line and not line.startswith("#") and len(line) <= MAX_QUESTION_CHARS))


def questions_from_headings(headings: Iterable[tuple[str, str]], count: int) -> list[str]:
    """Up to `count` questions about the headings of (source, heading) pairs, one heading per document and
    the collections taken in turn; the same pairs always give the same questions."""
    by_document: dict[str, dict[str, None]] = {}
    for source, heading in headings:
        topic = heading_topic(heading, source)
        if topic is not None:
            by_document.setdefault(source, {})[topic] = None
    by_collection: dict[str, list[str]] = {}
    for source in by_document:
        by_collection.setdefault(str(PurePosixPath(source).parent), []).append(source)
    # Collections and their documents in the order of a hash: spread over the corpus, yet always the same.
    queues = [sorted(sources, key=_rank) for _, sources in sorted(by_collection.items(), key=lambda item: _rank(item[0]))]
    questions: dict[str, None] = {}
    while len(questions) < count and any(queues):
        for queue in queues:
            if queue and len(questions) < count:
                source = queue.pop(0)
                topics = list(by_document[source])
                questions[heading_question(topics[_rank(source) % len(topics)])] = None
    return list(questions)


def heading_topic(heading: str, source: str = "") -> str | None:
    """What a heading is about, as a sample question may name it: its last part, without its number;
    None for an article label, a generic heading (总则), the document's own title (a heading ending in its file's
    name: 中华人民共和国建筑法 of 建筑法(2019-04-23).md), or one too short or long."""
    parts = [part for part in _PATH_SEPARATOR.split(heading or "") if part.strip()]
    if not parts or _ARTICLE.match(parts[-1].strip()):
        return None
    topic = " ".join(_NUMBER.sub("", parts[-1]).split()).strip(" ：:。.").removeprefix("关于")
    name = _DATE_IN_NAME.sub("", PurePosixPath(source).stem)
    if topic.lower() in GENERIC_HEADINGS or (name and topic.endswith(name)) or not 2 <= len(topic) <= 30:
        return None
    if not _CJK.search(topic) and len(topic.split()) < 2:
        return None  # one English word ("Overview") is no topic
    return topic


def heading_question(topic: str) -> str:
    """The sample question about `topic`, in its language; a heading that is a question already is asked as it is."""
    if topic.endswith(("？", "?")):
        return topic
    if _CJK.search(topic):
        return f"关于「{topic}」有哪些规定？"
    return f'What do the documents say about "{topic}"?'


def _rank(name: str) -> int:
    """A name's place in the samples' order: a hash, the same on every machine and every run."""
    return int.from_bytes(hashlib.sha1(name.encode("utf-8")).digest()[:8], "big")

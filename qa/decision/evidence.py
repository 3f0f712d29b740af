"""Evidence about a question and its best passage that similarity misses: what the question names that
the corpus lacks (another province, another year: the near misses), and a figure asked for that the
cited passage does not state."""

import importlib.metadata
import json
import re
from functools import lru_cache
from pathlib import Path

from qa.config import cache_dir
from qa.search.bilingual import place_names, write_json_atomically
from qa.search.keyword import jieba_words
from qa.text import has_chinese, to_simplified

# More absent names say no more: the feature is capped here, as it was fitted (qa/decision/data/relevance.json).
MAX_ABSENT = 2

_NUMBER = re.compile(r"(?<![A-Za-z0-9.])\d+(?:\.\d+)?(?![A-Za-z0-9])|第[一二三四五六七八九十]+[批届次期]")  # not digits inside a Latin token ("[31m", "5G")
# A question that asks for a figure: an amount, a count, a year, a duration, a share. 几 but not 几乎
# (almost), 茶几, 几何 nor 哪几 (which ones: 哪几种模式 asks for kinds, not a count); 多大 but not 多大程度 (how far).
_ASKS_FIGURE = re.compile(
    r"多少|(?<![哪茶])几(?![乎何])|哪一?年|何年|多久|多长时间|多大(?!程度)|多高|多远|多重|比例|百分之|占比"
    r"|\bhow (?:many|much|long|old|big|large|high)\b|\b(?:what|which) (?:year|percentage|proportion|share)\b",
    re.IGNORECASE,
)
# A figure in a text: digits, a Chinese numeral before a unit or measure word (十大, 四条, 三级, 141颗),
# or an English number word (an uploaded English document: "ten thousand yuan", "half of", "percent").
_FIGURE = re.compile(
    r"[0-9０-９]|分之|[一二三四五六七八九十两百千万亿]+[个条项套颗类批次年元人家所座种大届期级倍成岁天月日周里米亩户名位件部台份]"
    r"|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|hundred|thousand"
    r"|million|billion|dozen|half|percent)\b",
    re.IGNORECASE,
)
# A capitalised English word inside a sentence (not its first word): a candidate name.
_ENGLISH_NAME = re.compile(r"(?<=[A-Za-z,] )[A-Z][a-z]+\b")


@lru_cache(maxsize=1)
def place_words() -> frozenset[str]:
    """The words jieba's dictionary tags as places (ns) or organisations (nt), about 22,000.

    Read once from the dictionary and cached as JSON (jieba.posseg would tag them too, but loads
    for most of a second on every start)."""
    import jieba

    path = cache_dir() / f"jieba-places-{importlib.metadata.version('jieba')}.json"
    try:
        return frozenset(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        pass
    source = Path(jieba.__file__).parent / "dict.txt"
    words = sorted(
        parts[0]
        for parts in (line.split() for line in source.read_text(encoding="utf-8").splitlines())
        if len(parts) == 3 and parts[2] in ("ns", "nt")
    )
    write_json_atomically(path, words)
    return frozenset(words)


def named_things(question: str) -> list[tuple[str, ...]]:
    """The places, organisations and specific numbers a question names, each as alternative
    (simplified) spellings: "江苏省的…" -> [("江苏省",)], "… in Guangdong?" -> [("广东",)].

    Places are whole words of jieba's precise mode on the question as written (the keyword tokens are
    search-mode words, which add the parts of a name: 江苏 of 江苏省)."""
    simplified = to_simplified(question)
    found: list[tuple[str, ...]] = []
    if has_chinese(simplified):
        places = place_words()
        found += [(word,) for word in dict.fromkeys(jieba_words(simplified)) if len(word) >= 2 and word in places]
        found += [(match.group(),) for match in _NUMBER.finditer(simplified)]
    for match in _ENGLISH_NAME.finditer(question):
        names = place_names().get(match.group().lower(), [])
        if names:
            found.append(tuple(names))
    return found


def absent_names(question: str, contains) -> int:
    """How many of the question's named things `contains(phrase, whole_word)` finds nowhere (at most
    MAX_ABSENT). An ordinal must occur as a whole word: 第一批 is not found in "第二批…一批…第一"."""
    absent = sum(
        1
        for alternatives in named_things(question)
        if not any(contains(name, whole_word=name.startswith("第")) for name in alternatives)
    )
    return min(absent, MAX_ABSENT)


def asks_figure(question: str) -> bool:
    """Whether the question asks for a figure: how many, how much, which year, how long, what share."""
    return bool(_ASKS_FIGURE.search(to_simplified(question)))


def holds_figure(text: str) -> bool:
    """Whether `text` holds a figure: digits, or a Chinese numeral before a unit or measure word."""
    return bool(_FIGURE.search(to_simplified(text)))

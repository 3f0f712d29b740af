"""Facts about text that several stages need: Chinese characters, scripts, bigrams, stop words, case numbers.

One source for each: keyword retrieval, highlighting, the relevance decision and the page import
from here instead of keeping their own copies.

Scripts: readers write Chinese in simplified (zh-Hans) or traditional (zh-Hant) characters, and
a corpus may be in either. `to_simplified` (OpenCC's traditional-to-simplified table, phrase-aware)
maps both to one form, so that keywords match across scripts; the embedding model sees the text
as written.
"""

import re
import threading
from functools import lru_cache

# Chinese characters: CJK Unified Ideographs, Extension A, the compatibility block and the
# supplementary-plane extensions (B to H: rare characters of names and places).
CJK_CHARACTERS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
CJK = re.compile(f"[{CJK_CHARACTERS}]")
CJK_RUN = re.compile(f"[{CJK_CHARACTERS}]+")
SCRIPTS = ("zh-Hans", "zh-Hant", "en")

# Function words carry no topic; a question is mostly made of them (什么, 如何, 哪些).
STOPWORDS = frozenset(
    "的 了 是 在 和 与 及 或 等 对 为 把 被 将 从 向 以 于 也 都 就 而 并 这 那 之 其 各 有 中 上 下 "
    "什么 怎么 怎样 如何 哪些 哪个 哪里 哪 吗 呢 吧 啊 多少 几 为什么 是否 能否 可以 可 会 要 "
    "the a an of to in on for and or is are was were be by with as at it this that what which how "
    "who whom when where why do does did can could should would will more most i you we my our your their "
    "about into from has have its there these those".split()
)

# The seed's sections begin with their case number: "9 医学检查检验结果互认…".
_CASE_NUMBER = re.compile(r"\s*(\d+)\s+(.*)", re.S)
_converter_lock = threading.Lock()


def has_chinese(text: str) -> bool:
    return CJK.search(text) is not None


def bigrams(text: str) -> list[str]:
    """Every pair of adjacent Chinese characters of `text` (a lone character stands for itself)."""
    tokens = []
    for run in CJK_RUN.findall(text):
        tokens.extend([run] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)])
    return tokens


@lru_cache(maxsize=2)
def _converter(table: str):
    import opencc

    return opencc.OpenCC(table)


def _convert(text: str, table: str) -> str:
    if not has_chinese(text):
        return text
    converter = _converter(table)
    with _converter_lock:  # OpenCC's converter object is not documented as thread-safe
        return converter.convert(text)


def to_simplified(text: str) -> str:
    """`text` with traditional characters and phrases written in simplified ones (other text unchanged)."""
    return _convert(text, "t2s")


def in_script(text: str, target: str) -> str:
    """`text` with its Chinese written in `target` script ("zh-Hans" or "zh-Hant"); unchanged for "en".

    A question is searched in its corpus's script: the embedding model matches a simplified
    question to simplified text better than the same question in traditional characters.
    """
    if target == "zh-Hans":
        return to_simplified(text)
    if target == "zh-Hant":
        return _convert(text, "s2t")
    return text


def main_script(texts: list[str], sample: int = 2000) -> str:
    """The script most of `texts`' Chinese characters are written in; "en" when they have none.

    At most `sample` texts, evenly spread, are read: a million passages need not all be converted
    to tell simplified from traditional."""
    chinese = changed = 0
    for text in texts[:: max(1, len(texts) // sample)]:
        characters = CJK.findall(text)
        if characters:
            chinese += len(characters)
            simplified = to_simplified("".join(characters))
            changed += sum(1 for a, b in zip(characters, simplified) if a != b)
    if not chinese:
        return "en"
    # Simplified text changes nowhere; traditional text changes in roughly a third of its characters.
    return "zh-Hant" if changed / chinese > 0.05 else "zh-Hans"


def language(text: str) -> str:
    """"zh" if the text holds a Chinese character (either script), else "en": the language a question
    is answered in and whose decision thresholds apply."""
    return "zh" if has_chinese(text) else "en"


def script(text: str) -> str:
    """"en" for text without Chinese characters, else "zh-Hant" if it is written in traditional
    characters (converting it to simplified changes it), else "zh-Hans"."""
    if not has_chinese(text):
        return "en"
    return "zh-Hant" if to_simplified(text) != text else "zh-Hans"


def case_number(section: str) -> int | None:
    """The case number a section heading starts with ("9 医学检查…" -> 9), or None."""
    match = _CASE_NUMBER.match(section)
    return int(match.group(1)) if match else None


def split_case(section: str) -> tuple[str | None, str]:
    """A section heading as (case number, title): "9 医学检查…" -> ("9", "医学检查…"); (None, heading) otherwise."""
    match = _CASE_NUMBER.match(section)
    return (match.group(1), match.group(2).strip()) if match else (None, section)

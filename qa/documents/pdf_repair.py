"""Repairs for text extracted from PDFs: spaces inside Chinese and lines broken mid-sentence.

PDF extraction puts a line break wherever the layout wrapped a column and often a space between a
number and the Chinese word after it (`20 年`, `141 颗`). Both are artifacts: Chinese is written
without spaces. Spaces are kept only between two Latin letters or digits (`Zhejiang Province`,
`2021 2022`), where they separate words.
"""

import re

from qa.text import CJK_CHARACTERS

# Chinese characters, CJK and full-width punctuation, kana and Hangul: scripts written without spaces.
_NO_SPACE_SCRIPT = (
    CJK_CHARACTERS
    + "\u2e80-\u2fdf"  # radicals
    "\u3000-\u303f"  # CJK punctuation (。、「」…)
    "\u3040-\u30ff"  # kana
    "\u3100-\u312f\u31a0-\u31bf"  # bopomofo
    "\uac00-\ud7af"  # Hangul
    "\ufe30-\ufe4f"  # CJK compatibility forms
    "\uff00-\uffef"  # full-width forms (，；：（）０-９)
    "\u2018-\u201f\u2026\u2014"  # curly quotes, ellipsis and dash used in Chinese text
)
_SPACE_NEXT_TO_CJK = re.compile(
    rf"(?<=[{_NO_SPACE_SCRIPT}])[^\S\n]+|[^\S\n]+(?=[{_NO_SPACE_SCRIPT}])"
)
_SPACE_RUN = re.compile(r"[^\S\n]+")


def is_no_space_char(char: str) -> bool:
    """True for a character of a script written without spaces between words (Chinese, Japanese)."""
    return bool(re.fullmatch(f"[{_NO_SPACE_SCRIPT}]", char))


def remove_spaces_in_chinese(text: str) -> str:
    """Drop spaces that touch a Chinese character and collapse other runs of spaces to one.

    Line breaks are left alone; `join_lines` handles them.
    """
    text = _SPACE_NEXT_TO_CJK.sub("", text)
    return _SPACE_RUN.sub(" ", text).strip(" ")


def one_line(text: str) -> str:
    """`text` on one line: runs of whitespace (line breaks too) collapsed to one space, none next to Chinese."""
    return remove_spaces_in_chinese(" ".join(text.split()))


def join_lines(lines: list[str]) -> str:
    """Join lines that a layout wrapped into one run of text.

    Lines are glued directly; a space is put back only between two Latin letters or digits,
    where the wrap removed a word boundary.
    """
    text = ""
    for line in lines:
        line = remove_spaces_in_chinese(line)
        if not line:
            continue
        if text and text[-1].isascii() and text[-1].isalnum() and line[0].isascii() and line[0].isalnum():
            text += " "
        text += line
    return text

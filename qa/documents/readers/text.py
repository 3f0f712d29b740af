"""Text files (.txt, .md, .markdown): the bytes decoded, Markdown's `#` lines opening sections.

Text is decoded as UTF-8 (with or without BOM), UTF-16 with a BOM, or else GB18030, the superset
of GBK and GB2312 that Chinese Windows editors still save in; the encoding used is returned so the
build can say so. HTML pages without a declared charset are decoded the same way (html.py).
"""

import codecs
import re

from qa.documents.pdf_repair import is_no_space_char
from qa.documents.readers.extracted import Extracted, Heading
from qa.errors import DocumentError


def decode_text(raw: bytes) -> tuple[str, str]:
    """Decode a text file's bytes; return (text, encoding used), or raise DocumentError.

    UTF-8 is tried first: GBK bytes are almost never valid UTF-8, so a file that decodes is UTF-8.
    GB18030 decodes many byte sequences that are not Chinese (Latin-1 `é` followed by a letter is a
    valid pair), so its result is accepted only when the characters it produced look like Chinese.
    """
    if raw.startswith(codecs.BOM_UTF8):
        candidates = [("utf-8-sig", "UTF-8")]
    elif raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        candidates = [("utf-16", "UTF-16")]
    else:
        candidates = [("utf-8", "UTF-8"), ("gb18030", "GB18030")]
    first_error = None
    for codec, name in candidates:
        try:
            text = raw.decode(codec)
        except UnicodeDecodeError as error:
            first_error = first_error or error
            continue
        if codec == "gb18030" and not _looks_chinese(text):
            continue
        if "\x00" in text:
            raise DocumentError("binary data, not text (it contains NUL bytes)")
        return text.replace("\r\n", "\n").replace("\r", "\n"), name
    offset = first_error.start if first_error else 0
    if len(candidates) == 1:
        name = candidates[0][1]
        raise DocumentError(
            f"bad encoding: starts with a {name} byte-order mark but is not {name} (bad byte at offset {offset}); "
            "save it as UTF-8"
        )
    raise DocumentError(
        f"bad encoding: neither UTF-8 nor GB18030 Chinese text (undecodable byte at offset {offset}); save it as UTF-8"
    )


def _looks_chinese(text: str) -> bool:
    """True when nearly all non-ASCII characters are Chinese characters or Chinese punctuation."""
    wide = [char for char in text if not char.isascii()]
    if not wide:
        return True
    chinese = sum(1 for char in wide if is_no_space_char(char) or char in "·—…“”‘’①②③④⑤⑥⑦⑧⑨⑩")
    return chinese >= 0.9 * len(wide)


_MARKDOWN_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$", re.MULTILINE)


def markdown_headings(text: str) -> list[Heading]:
    """The `#` heading lines of Markdown text."""
    return [
        Heading(match.group(2).strip(), match.start(), match.end(), len(match.group(1)))
        for match in _MARKDOWN_HEADING.finditer(text)
    ]


def read_markdown(raw: bytes) -> Extracted:
    """A Markdown file's text as it is, its `#` lines as headings; DocumentError if it cannot be decoded."""
    text, encoding = decode_text(raw)
    return Extracted(text, markdown_headings(text), encoding)


def read_plain_text(raw: bytes) -> Extracted:
    """A text file's text as it is, one section; DocumentError if it cannot be decoded."""
    text, encoding = decode_text(raw)
    return Extracted(text, [], encoding)

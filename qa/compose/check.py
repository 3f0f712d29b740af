"""Check a written answer sentence by sentence against the passages it cites.

A sentence of the answer is supported when

    it cites       at least one passage, by its card's number ([1], [1][3], [1, 3], 【2】), every one on the cards
    its figures    every number it states (Arabic or Chinese numerals: 三十日 = 30日, 百分之五 = 5%,
                   一万元 = 1万元 = 10000元, 第一千零二十五条 = 第1025条) is in a cited passage or its citation
    its content    is found there: the share of its keyword weight that the cited passages hold (retrieval's
                   own keyword analysis, qa/search/keyword.py: the same words, idf and English translations)
                   is at least SUPPORTED_COVERAGE, or at least PARTLY_COVERED when the model's own
                   similarity of the sentence to a cited passage (the dense evidence) reaches SUPPORTED_SIMILARITY;
                   and each of its clauses (between commas) of CLAIM_CHARS or more has CLAUSE_COVERAGE there, so
                   that a sentence joining what a card says to what it does not is caught

A line too short to claim anything ("综上：", a heading) is not checked. The reasons a sentence is not
supported, first that applies: no citation, a citation of a passage that is not on the cards, a figure in
no cited passage, content not found in the cited passages, a clause not found there. SUPPORTED_COVERAGE,
PARTLY_COVERED and SUPPORTED_SIMILARITY were set by hand on the seed; CLAUSE_COVERAGE was chosen on
sentences built from the statute library's cards for STARD fold 1/10, and scripts/evaluate_composer.py
reports all of them on folds and corpora they were not chosen on (README, Written answers).
"""

import re
from dataclasses import asdict, dataclass

from qa.answer import CitedPassage

SUPPORTED_COVERAGE = 0.6
PARTLY_COVERED = 0.35
SUPPORTED_SIMILARITY = 0.88
CLAIM_CHARS = 5
CLAUSE_COVERAGE = 0.5
_CLAUSE = re.compile(r"[，,：:；;、]")
_WORD_CHARACTERS = re.compile(r"[\u4e00-\u9fff]|[A-Za-z]+")

REASONS = {  # reason -> (Chinese, English), as the page and the terminal show it
    "no_citation": ("未注明引文", "cites no passage"),
    "unknown_passage": ("引用了卡片上没有的资料", "cites a passage that is not on the cards"),
    "figure_missing": ("数字不在所引资料中", "states a figure that is in no cited passage"),
    "unsupported": ("所引资料中未见其内容", "its content is not in the cited passages"),
    "part_unsupported": ("句中有部分内容不在所引资料中", "part of it is not in the cited passages"),
}
UNSUPPORTED_MARK = ("未在引文中找到依据", "Not found in the cited passages")

_CITATION = re.compile(r"\s*[\[【［]\s*(?:资料|資料|来源|來源|source|passage)?\s*(\d+(?:\s*(?:[,，、;；]|[-–~])\s*\d+)*)\s*[\]】］]", re.IGNORECASE)
# A sentence ends at Chinese end punctuation, an English full stop after a word, or a line break; citations
# written after the punctuation ("……费。[1]") belong to the sentence before.
_SENTENCE_END = re.compile(r"[。！？!?；;]+[”’」』）)]*|(?<=[A-Za-z\u4e00-\u9fff\]）)】])\.(?=\s|$)|\n+|(?<=[\]】］])[ \t]+(?=\S)")
_BULLET = re.compile(r"^\s*(?:[-*•·]|\d+[.、)]|[（(]\d+[)）])\s*")

# Figures: Arabic numbers (with thousands commas, a 万/亿 after them), and runs of Chinese numerals.
_ARABIC = re.compile(r"(\d+(?:,\d{3})*(?:\.\d+)?)\s*(万|亿)?")
_CHINESE_NUMERALS = "零〇一二两三四五六七八九十百千万亿"
_CHINESE_RUN = re.compile(f"(?<![\\d.])(第)?([{_CHINESE_NUMERALS}]+)(?=(.?))")  # not the 万 of 5万
# A share: 百分之五 (5, as 5%), 三分之二 (2 and 3, as 2/3).
_SHARE = re.compile(f"([{_CHINESE_NUMERALS}\\d.]+)分之([{_CHINESE_NUMERALS}点\\d.]+)")
_CHINESE_DIGITS = dict(zip("零〇一二三四五六七八九", (0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9)))
# A lone numeral is a figure before a unit or measure word (五日, 三人) or after 第; otherwise it is part of a
# word (统一, 一般, 三亚, 四川).
_UNITS = set("日天月年周岁个人名位项条款章节编次倍元角分万亿百千%级类种家户件份届期层栋所台辆")


@dataclass(frozen=True)
class CheckedSentence:
    """A sentence of a written answer and what the check made of it. `supported` is None for a line that
    claims nothing (not checked); `reason` is "" when supported, else a key of REASONS."""

    text: str  # as written, its citations included
    cites: tuple[int, ...]
    supported: bool | None
    reason: str = ""
    coverage: float = 0.0
    similarity: float = 0.0
    missing_figures: tuple[str, ...] = ()
    weakest_clause: float = 1.0  # the coverage of its least-covered clause (1.0 for a sentence of one clause)

    def to_json(self) -> dict:
        return {**asdict(self), "cites": list(self.cites), "missing_figures": list(self.missing_figures)}


def split_answer(text: str) -> list[tuple[str, tuple[int, ...]]]:
    """The sentences of a written answer, each with the card numbers it cites (in order, once each)."""
    pieces, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        end = match.end()
        while (cited := _CITATION.match(text, end)) is not None:  # "……费。[1][2]": the citations go with it
            end = cited.end()
        pieces.append(text[start:end])
        start = end
    pieces.append(text[start:])
    sentences = []
    for piece in pieces:
        piece = piece.strip()
        if piece:
            numbers = [number for match in _CITATION.finditer(piece) for number in _cited_numbers(match.group(1))]
            sentences.append((piece, tuple(dict.fromkeys(numbers))))
    return sentences


def _cited_numbers(group: str) -> list[int]:
    """The card numbers in a citation's brackets: "1", "1, 3", "1、3", "2-4" (a short range)."""
    numbers = []
    for part in re.split(r"\s*[,，、;；]\s*", group):
        bounds = [int(number) for number in re.split(r"\s*[-–~]\s*", part)]
        if len(bounds) == 2 and 0 < bounds[1] - bounds[0] < 10:
            numbers.extend(range(bounds[0], bounds[1] + 1))
        else:
            numbers.extend(bounds)
    return numbers


def claim_text(sentence: str) -> str:
    """The sentence without its citations and list bullet: what it claims."""
    return _BULLET.sub("", _CITATION.sub("", sentence)).strip()


def figures(text: str) -> dict[float, str]:
    """The numbers `text` states, by value, each with how it was written: Arabic and Chinese numerals
    alike, so that 三十日 and 30日, 一万元 and 1万元 state the same 30 and 10000."""
    found: dict[float, str] = {}
    for match in _SHARE.finditer(text):
        whole, part = (_number(side) for side in match.groups())
        if whole is not None and part is not None:
            found.setdefault(float(part), match.group())
            if whole != 100:
                found.setdefault(float(whole), match.group())
    text = _SHARE.sub(" ", text)
    for match in _ARABIC.finditer(text):
        value = float(match.group(1).replace(",", "")) * {"万": 1e4, "亿": 1e8}.get(match.group(2) or "", 1)
        found.setdefault(value, match.group().strip())
    for match in _CHINESE_RUN.finditer(text):
        ordinal, run, after = match.groups()
        if len(run) == 1 and not ordinal and after not in _UNITS:
            continue
        value = _chinese_number(run)
        if value is not None:
            found.setdefault(float(value), match.group())
    return found


def _number(written: str) -> float | None:
    """A number written in Arabic or Chinese numerals; None when it is neither."""
    try:
        return float(written)
    except ValueError:
        return _chinese_number(written)


def _chinese_number(run: str) -> float | None:
    """The value of a run of Chinese numerals (三十 30, 一千零二十五 1025, 二〇二一 2021, 一万 10000, 百 100,
    十五点五 15.5); None for a run that is not one number (三四, 万万)."""
    if all(character in _CHINESE_DIGITS for character in run):
        if len(run) == 1:
            return _CHINESE_DIGITS[run]
        if len(run) >= 4 or "〇" in run or "零" in run:  # a year or a code read digit by digit: 二〇二一
            return int("".join(str(_CHINESE_DIGITS[character]) for character in run))
        return None  # 三四个: three or four, not 34
    import cn2an  # imported on the first figure: the page never pays for it without a composer

    if run[0] in "十百千万亿":  # 十五, 百: a leading 一 left unsaid
        run = "一" + run
    try:
        return float(cn2an.cn2an(run.replace("两", "二"), "strict"))
    except (ValueError, KeyError, TypeError):
        return None


class CitationChecker:
    """Checks written sentences against the cards they cite with the served index's keyword analysis
    (`keywords`, a KeywordIndex, or a callable returning the one now served) and the assistant's `embedder`."""

    def __init__(self, embedder, keywords):
        self.embedder = embedder
        self._keywords = keywords

    @property
    def keywords(self):
        return self._keywords() if callable(self._keywords) else self._keywords

    def check(self, text: str, passages: list[CitedPassage]) -> list[CheckedSentence]:
        """Every sentence of the written answer `text`, checked against `passages` (the cards, by rank)."""
        cards = {passage.rank: passage for passage in passages}
        sentences = split_answer(text)
        claims = [claim_text(sentence) for sentence, _ in sentences]
        checkable = [i for i, claim in enumerate(claims) if self._claims_something(claim)]
        similarities = self._similarities([claims[i] for i in checkable], [sentences[i][1] for i in checkable], cards)
        checked = [CheckedSentence(sentence, cites, None) for sentence, cites in sentences]
        for i, similarity in zip(checkable, similarities):
            checked[i] = self._judge(sentences[i][0], claims[i], sentences[i][1], cards, similarity)
        return checked

    @staticmethod
    def _claims_something(claim: str) -> bool:
        """Whether a line states anything to check: a figure, or at least CLAIM_CHARS characters of words
        (not "综上：", "Answer:")."""
        return bool(figures(claim)) or len(_WORD_CHARACTERS.findall(claim)) >= CLAIM_CHARS

    def _judge(self, sentence: str, claim: str, cites: tuple[int, ...], cards: dict, similarity: float) -> CheckedSentence:
        if not cites:
            return CheckedSentence(sentence, cites, False, "no_citation")
        if any(number not in cards for number in cites):
            return CheckedSentence(sentence, cites, False, "unknown_passage")
        cited = "\n".join(f"{cards[n].citation}\n{cards[n].text}" for n in cites)
        known = figures(cited)
        missing = tuple(written for value, written in figures(claim).items() if value not in known)
        coverage = float(self.keywords.text_coverage(claim, [cited])[0])
        result = dict(text=sentence, cites=cites, coverage=round(coverage, 3), similarity=round(similarity, 3))
        if missing:
            return CheckedSentence(**result, supported=False, reason="figure_missing", missing_figures=missing)
        if not (coverage >= SUPPORTED_COVERAGE or (coverage >= PARTLY_COVERED and similarity >= SUPPORTED_SIMILARITY)):
            return CheckedSentence(**result, supported=False, reason="unsupported")
        # A sentence can join what a card says to what it does not: each clause must be found there too.
        parts = [part for part in _CLAUSE.split(claim) if len(_WORD_CHARACTERS.findall(part)) >= CLAIM_CHARS]
        weakest = min(float(self.keywords.text_coverage(part, [cited])[0]) for part in parts) if len(parts) > 1 else 1.0
        result["weakest_clause"] = round(weakest, 3)
        if weakest < CLAUSE_COVERAGE:
            return CheckedSentence(**result, supported=False, reason="part_unsupported")
        return CheckedSentence(**result, supported=True)

    def _similarities(self, claims: list[str], cites: list[tuple[int, ...]], cards: dict) -> list[float]:
        """For each claim, its highest cosine to a passage it cites that is on the cards (0 without one)."""
        if not claims:
            return []
        ranks = sorted(cards)
        claim_vectors = self.embedder.embed_questions(claims)
        card_vectors = self.embedder.embed_passages([cards[rank].text for rank in ranks])
        similarity = claim_vectors @ card_vectors.T
        column = {rank: i for i, rank in enumerate(ranks)}
        return [max((float(similarity[row, column[n]]) for n in numbers if n in column), default=0.0) for row, numbers in enumerate(cites)]


def supported_share(sentences: list[CheckedSentence]) -> float | None:
    """The share of the checked sentences that are supported; None when no sentence claims anything."""
    checked = [sentence.supported for sentence in sentences if sentence.supported is not None]
    return round(sum(checked) / len(checked), 4) if checked else None


def unsupported_mark(sentence: CheckedSentence, english: bool) -> str:
    """What a reader is told of an unsupported sentence: the mark and the reason, in the page's language."""
    which = 1 if english else 0
    return f"{UNSUPPORTED_MARK[which]}: {REASONS[sentence.reason][which]}" if english else f"{UNSUPPORTED_MARK[0]}：{REASONS[sentence.reason][0]}"

"""Page numbers of cited passages: in the JSON answer, on the page's cards and in the terminal."""

from click.testing import CliRunner

from qa.answer import Answer, CitedPassage
from qa.page.conversation import Turn
from qa.page.render import render_answer


def _answer(question: str, page: int | None) -> Answer:
    passage = CitedPassage(rank=1, score=0.9, source="报告.pdf", section="", text="完成时间为2025年。", start=0, end=10, page=page)
    return Answer(question=question, outcome="answered", confidence=0.9, passages=[passage])


def test_cards_show_the_page_next_to_the_source_in_the_questions_language():
    chinese = render_answer(_answer("完成时间是什么？", 3), Turn("完成时间是什么？", "完成时间是什么？", "完成时间是什么？"))
    assert '<span class="qa-source" title="来源文件">报告.pdf</span><span class="qa-page">第 3 页</span>' in chinese
    english = render_answer(_answer("When is it due?", 3), Turn("When is it due?", "When is it due?", "When is it due?"))
    assert '<span class="qa-page">page 3</span>' in english
    unpaged = render_answer(_answer("完成时间是什么？", None), Turn("完成时间是什么？", "完成时间是什么？", "完成时间是什么？"))
    assert "qa-page" not in unpaged


def test_json_and_terminal_carry_the_page():
    import click

    from qa.terminal import print_answer

    assert _answer("q", 3).to_json()["passages"][0]["page"] == 3
    assert _answer("q", None).to_json()["passages"][0]["page"] is None

    @click.command()
    def show():
        print_answer(_answer("q", 3))

    assert "[1] 90%  报告.pdf, page 3 · " in CliRunner().invoke(show).output


def test_build_summaries_name_the_pages_read_by_ocr_and_the_unreadable_ones():
    import time

    from qa.documents.corpus import Problem
    from qa.documents.ocr import OcrSummary
    from qa.indexing.changes import CorpusChanges
    from qa.indexing.report import BuildReport
    from qa.page.index_status import IndexStatus, RebuildState
    from qa.page.render import render_status
    from qa.terminal import ocr_lines, page_ranges

    assert (page_ranges([5, 1, 2, 3]), page_ranges([4])) == ("pages 1-3, 5", "page 4")
    summary = OcrSummary(pages=[1, 2, 3], recognised=1, cached=2, characters=900, confidence=0.9876)
    assert ocr_lines({"扫描件.pdf": summary}) == [
        "OCR 扫描件.pdf: pages 1-3 (1 recognised now, 2 from the OCR cache), mean confidence 0.988"
    ]
    report = BuildReport(
        documents=1, passages=3, problems=[], changes=CorpusChanges(), seconds=1.0, folder="x",
        ocr={"扫描件.pdf": summary}, page_problems=[Problem("扫描件.pdf", "page 4: OCR found no text on it")],
    )
    shown = render_status(IndexStatus(rebuild=RebuildState(finished=time.time(), report=report)))
    assert "<li>扫描件.pdf: 3 页 pages, 平均置信度 mean confidence 0.988</li>" in shown
    assert "<li>扫描件.pdf: page 4: OCR found no text on it</li>" in shown
    ocr = RebuildState(running=True, stage="ocr", done=1, total=3, started=time.time(), stage_started=time.time())
    running = render_status(IndexStatus(rebuild=ocr))
    assert "文字识别 OCR of scanned pages" in running and '<progress max="3" value="1"></progress> 1/3' in running

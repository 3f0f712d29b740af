"""Tables (DOCX, HTML, text PDF), Excel sheets and PowerPoint slides: rows become passages with their
header, cited under the table's name; slides are sections whose page is the slide number.

The files are made here with the real writers (python-docx, reportlab, openpyxl, python-pptx) and
read back by the real readers; the question test builds a real index with the bundled model.
"""

import io

import pytest

from qa.documents.corpus import read_document
from qa.documents.readers import extract
from qa.documents.tables import row_lines, title_row
from qa.errors import DocumentError
from qa.passages import make_passages

from .test_readers import make_docx

DOCX_ROWS = [["项目", "指标", "完成时间"], ["小微企业园", "新建30个", "2025年6月"], ["未来社区", "建成50个", "2025年12月"]]
PDF_ROWS = [["任务", "责任单位", "完成时间"], ["数字化改革", "省大数据局", "2026年3月"], ["山区海岛县结对帮扶", "省发展改革委", "2026年8月"]]
SHEET_ROWS = [["指标", "2025年目标", "单位"], ["人均可支配收入", 75000, "元"], ["城镇登记失业率", 3.5, "%"], [None, None, None]]


def make_table_pdf(before: str, caption: str, rows: list[list[str]], after: str) -> bytes:
    """A text PDF: a paragraph, a caption, a ruled table and a paragraph (reportlab's built-in Chinese font)."""
    from reportlab.lib import colors
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Table, TableStyle

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    style = ParagraphStyle("body", fontName="STSong-Light", fontSize=12, leading=18, wordWrap="CJK")
    grid = TableStyle([("FONT", (0, 0), (-1, -1), "STSong-Light", 11), ("GRID", (0, 0), (-1, -1), 0.5, colors.black)])
    buffer = io.BytesIO()
    SimpleDocTemplate(buffer).build([Paragraph(before, style), Paragraph(caption, style), Table(rows, style=grid), Paragraph(after, style)])
    return buffer.getvalue()


def make_xlsx(sheets: dict[str, list[list]]) -> bytes:
    import openpyxl

    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    for name, rows in sheets.items():
        sheet = workbook.create_sheet(name)
        for row in rows:
            sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def make_pptx(slides: list[tuple[str | None, list[str], list[list[str]] | None]]) -> bytes:
    """Slides of (title or None for a slide without one, body lines, table rows or None)."""
    import pptx
    from pptx.util import Inches

    presentation = pptx.Presentation()
    for title, lines, rows in slides:
        slide = presentation.slides.add_slide(presentation.slide_layouts[1 if title else 6])
        if title:
            slide.shapes.title.text = title
            body = slide.placeholders[1].text_frame
        else:
            body = slide.shapes.add_textbox(Inches(1), Inches(1), Inches(6), Inches(2)).text_frame
        body.text = lines[0]
        for line in lines[1:]:
            body.add_paragraph().text = line
        if rows:
            table = slide.shapes.add_table(len(rows), len(rows[0]), Inches(1), Inches(4.5), Inches(6), Inches(1.5)).table
            for r, row in enumerate(rows):
                for c, value in enumerate(row):
                    table.cell(r, c).text = value
    buffer = io.BytesIO()
    presentation.save(buffer)
    return buffer.getvalue()


def test_row_lines_join_each_cell_to_its_header():
    assert row_lines([["项目", "指标", ""], ["小微企业园", "", "备注"], ["项目", "指标", ""], ["", "", ""]]) == ["项目：小微企业园；备注"]
    assert row_lines([["只有一行", "两格"]]) == ["只有一行；两格"]
    assert row_lines([]) == []
    # A title across the top of a sheet is not the header.
    assert title_row([["2025年民生指标", "", ""], ["指标", "目标", "单位"], ["失业率", "3.5", "%"]]) == (
        "2025年民生指标", [["指标", "目标", "单位"], ["失业率", "3.5", "%"]],
    )
    assert title_row([["指标", "目标"], ["失业率", "3.5"]]) == (None, [["指标", "目标"], ["失业率", "3.5"]])


def test_docx_table_rows_are_passages_cited_under_the_caption(tmp_path):
    (tmp_path / "计划.docx").write_bytes(
        make_docx("年度计划", [("heading", "一、重点项目"), ("paragraph", "表1 2025年重点项目清单"), ("table", DOCX_ROWS), ("paragraph", "以上项目按月调度。")])
    )
    document = read_document(tmp_path / "计划.docx", tmp_path)
    passages = make_passages([document], max_chars=120)
    assert [(p.section, p.text) for p in passages] == [
        ("一、重点项目", "表1 2025年重点项目清单"),
        ("一、重点项目 · 表1 2025年重点项目清单", "项目：小微企业园；指标：新建30个；完成时间：2025年6月"),
        ("一、重点项目 · 表1 2025年重点项目清单", "项目：未来社区；指标：建成50个；完成时间：2025年12月"),
        ("一、重点项目", "以上项目按月调度。"),
    ]
    assert {p.page for p in passages} == {None}  # Word has no fixed pages


def test_html_table_with_caption_and_colspan():
    page = """<html><body><h1>通知</h1><table><caption>附表 补贴标准</caption>
    <tr><th>对象</th><th colspan="2">标准</th></tr><tr><td>返乡青年</td><td>5万元</td><td>一次性</td></tr></table>
    <p>特此通知。</p></body></html>"""
    extracted = extract(page.encode("utf-8"), ".html")
    assert extracted.text == "通知\n对象：返乡青年；标准：5万元；标准：一次性\n特此通知。\n"
    assert [(t.title, extracted.text[t.start : t.end]) for t in extracted.tables] == [("附表补贴标准", "对象：返乡青年；标准：5万元；标准：一次性")]


def test_text_pdf_table_rows_in_reading_order_with_the_page(tmp_path):
    (tmp_path / "分工.pdf").write_bytes(make_table_pdf("二〇二六年工作安排如下。", "表2 重点任务分工表", PDF_ROWS, "各单位要按时完成。"))
    document = read_document(tmp_path / "分工.pdf", tmp_path)
    assert document.text == (
        "二〇二六年工作安排如下。\n表2重点任务分工表\n任务：数字化改革；责任单位：省大数据局；完成时间：2026年3月\n"
        "任务：山区海岛县结对帮扶；责任单位：省发展改革委；完成时间：2026年8月\n各单位要按时完成。\n"
    )
    rows = [p for p in make_passages([document], max_chars=120) if p.section == "表2重点任务分工表"]
    assert [(p.text[:9], p.page) for p in rows] == [("任务：数字化改革；", 1), ("任务：山区海岛县结", 1)]


def test_xlsx_sheets_are_tables_numbers_as_written():
    extracted = extract(make_xlsx({"民生指标": SHEET_ROWS, "空表": [], "带标题": [["重点任务"], ["任务", "时间"], ["改革", "2026年"]]}), ".xlsx")
    assert extracted.text == (
        "指标：人均可支配收入；2025年目标：75000；单位：元\n指标：城镇登记失业率；2025年目标：3.5；单位：%\n任务：改革；时间：2026年\n"
    )
    assert [t.title for t in extracted.tables] == ["民生指标", "带标题 · 重点任务"]


def test_broken_xlsx_is_a_named_problem():
    data = make_xlsx({"表": SHEET_ROWS})
    with pytest.raises(DocumentError, match=r"^broken \.xlsx archive \("):
        extract(data[: len(data) // 2], ".xlsx")


def test_pptx_slides_are_sections_and_pages(tmp_path):
    (tmp_path / "汇报.pptx").write_bytes(make_pptx([
        ("乡村振兴工作汇报", ["全省共建成未来乡村200个。"], None),
        (None, ["没有标题的一页。"], None),
        ("主要成效", ["农民收入持续增长。"], [["地区", "增幅"], ["山区26县", "8.2%"]]),
    ]))
    document = read_document(tmp_path / "汇报.pptx", tmp_path)
    passages = make_passages([document], max_chars=120)
    assert [(p.section, p.text, p.page) for p in passages] == [
        ("乡村振兴工作汇报", "全省共建成未来乡村200个。", 1),
        ("第 2 张幻灯片", "没有标题的一页。", 2),
        ("主要成效", "农民收入持续增长。", 3),
        ("主要成效 · 表 1", "地区：山区26县；增幅：8.2%", 3),
    ]


@pytest.mark.slow  # builds an index (~25 s here)
@pytest.mark.parametrize(
    ("question", "source", "row"),
    [
        ("省大数据局负责哪项任务？", "分工.pdf", "任务：数字化改革；责任单位：省大数据局；完成时间：2026年3月"),
        ("未来社区要建成多少个？", "计划.docx", "项目：未来社区；指标：建成50个；完成时间：2025年12月"),
        ("人均可支配收入2025年的目标是多少？", "指标.xlsx", "指标：人均可支配收入；2025年目标：75000；单位：元"),
    ],
)
def test_a_question_about_a_cell_cites_its_row(table_corpus, question, source, row):
    answer = table_corpus.ask(question, k=3)
    first = answer.passages[0]
    assert (first.source, row in first.text) == (source, True), [(p.source, p.text) for p in answer.passages]
    assert first.page == (1 if source.endswith(".pdf") else None)


@pytest.fixture(scope="module")
def table_corpus(tmp_path_factory, embedder):
    from qa.assistant import Assistant
    from qa.config import Config

    corpus = tmp_path_factory.mktemp("tables-corpus")
    (corpus / "计划.docx").write_bytes(
        make_docx("年度计划", [("heading", "一、重点项目"), ("paragraph", "表1 2025年重点项目清单"), ("table", DOCX_ROWS), ("paragraph", "以上项目按月调度。")])
    )
    (corpus / "分工.pdf").write_bytes(make_table_pdf("二〇二六年工作安排如下。", "表2 重点任务分工表", PDF_ROWS, "各单位要按时完成。"))
    (corpus / "指标.xlsx").write_bytes(make_xlsx({"民生指标": SHEET_ROWS}))
    (corpus / "说明.md").write_text("# 说明\n\n本文件汇总年度重点工作的安排。各地要结合实际抓好落实。\n", encoding="utf-8")
    assistant = Assistant(Config(corpus_dir=corpus, index_dir=tmp_path_factory.mktemp("tables-index")), embedder)
    report = assistant.rebuild()
    assert report.problems == []
    return assistant

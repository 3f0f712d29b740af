"""Sentence splitting and passages: whole sentences, bounded length, exact offsets, sections."""

from pathlib import Path

from qa.documents.corpus import read_corpus
from qa.passages import make_passages, split_sentences

from .conftest import SEED_CORPUS


def sentences(text):
    return [text[s:e] for s, e in split_sentences(text)]


def test_chinese_and_ascii_sentence_ends():
    assert sentences("第一句。第二句！第三句？第四；\n第五\nHello world. Version 3.5 is out!") == [
        "第一句。", "第二句！", "第三句？", "第四；", "第五", "Hello world.", "Version 3.5 is out!",
    ]


def test_closing_quotes_stay_with_their_sentence():
    assert sentences("他说：“好。”然后走了。（完。）") == ["他说：“好。”", "然后走了。", "（完。）"]


def test_seed_passages_are_exact_bounded_and_never_cut_a_sentence():
    documents, problems = read_corpus(SEED_CORPUS)
    assert problems == []
    passages = make_passages(documents, max_chars=120)
    texts = {d.source: d.text for d in documents}
    all_sentences = {texts[d.source][s:e] for d in documents for sec in d.sections for s, e in split_sentences(d.text, sec.start, sec.end)}
    for passage in passages:
        assert texts[passage.source][passage.start : passage.end] == passage.text
        pieces = sentences(passage.text)
        assert all(piece in all_sentences for piece in pieces)
        assert len(passage.text) <= 120 or len(pieces) == 1
    assert [p.id for p in passages] == list(range(len(passages)))
    sections = sorted({p.section for p in passages}, key=lambda s: int(s.split()[0]))
    assert sections[0] == "1 为民办实事20年持续增进民生福祉" and len(sections) == 10


def test_markdown_headings_become_sections_and_txt_has_none(tmp_path: Path):
    (tmp_path / "a.md").write_text("# 标题\n\n引言。\n\n## 第一节\n\n内容一。内容二。\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("纯文本。第二句。", encoding="utf-8")
    documents, _ = read_corpus(tmp_path)
    passages = make_passages(documents, max_chars=4)
    assert [(p.source, p.section, p.text) for p in passages] == [
        ("a.md", "标题", "引言。"),
        ("a.md", "第一节", "内容一。"),
        ("a.md", "第一节", "内容二。"),
        ("b.txt", "", "纯文本。"),
        ("b.txt", "", "第二句。"),
    ]
    assert passages[0].embedding_text() == "标题\n引言。"
    assert passages[3].embedding_text() == "纯文本。"


def test_a_sentence_longer_than_the_limit_is_kept_whole():
    from qa.documents.corpus import Document, Section

    text = "这是一个很长的句子没有任何标点一直写下去" * 5 + "。短句。"
    passages = make_passages([Document("x.txt", text, [Section("", 0, len(text))])], max_chars=20)
    assert [p.text for p in passages] == [text[:-3], "短句。"]


def test_passages_carry_the_page_they_start_on():
    from qa.documents.corpus import Document, Section

    text = "第一页的句子。\n第二页的句子。\n\n第四页的句子。\n"
    # Page 3 is empty: it starts where page 4 does.
    starts = [0, text.index("第二页"), text.index("第四页"), text.index("第四页")]
    document = Document("a.pdf", text, [Section("", 0, len(text))], page_starts=starts)
    passages = make_passages([document], max_chars=7)
    assert [(p.text, p.page) for p in passages] == [("第一页的句子。", 1), ("第二页的句子。", 2), ("第四页的句子。", 4)]
    unpaged = make_passages([Document("a.md", text, [Section("", 0, len(text))])], max_chars=7)
    assert {p.page for p in unpaged} == {None}


def test_passages_of_an_index_written_before_pages_load_with_no_page():
    import json

    from qa.passages import Passage

    line = '{"id": 0, "source": "a.md", "section": "", "start": 0, "end": 3, "text": "一二三"}'
    assert Passage(**json.loads(line)).page is None
    assert json.loads(json.dumps(Passage(0, "a.pdf", "", 0, 3, "一二三", page=2).to_dict()))["page"] == 2

"""The structure read from a document's text: titles, dates, heading paths, and the units passages keep whole.

Three real kinds of text, each in a format that carries no structure markup of its own where it matters:
a law in Markdown (the statute library's layout), a numbered policy document as plain text, and a
question-and-answer interpretation as a Word file. Labels and paths are checked exactly.
"""

from pathlib import Path

import docx

from qa.documents.corpus import read_corpus
from qa.documents.readers import Heading
from qa.documents.structure import document_date, fallback_title, heading_paths, units
from qa.passages import make_passages

# The opening of the Civil Code's book on personality rights as the statute library holds it
# (../shared/eval/statutes/corpus/民法典/人格权编.md), 第一千零二十五条 and 第一千零二十六条 included.
CIVIL_CODE = """# 中华人民共和国民法典

# 人格权编

2020年5月28日 第十三届全国人民代表大会第三次会议通过

2021年1月1日 施行

<!-- INFO END -->

## 第五章  名誉权和荣誉权

第一千零二十四条 民事主体享有名誉权。任何组织或者个人不得以侮辱、诽谤等方式侵害他人的名誉权。

名誉是对民事主体的品德、声望、才能、信用等的社会评价。

第一千零二十五条 行为人为公共利益实施新闻报道、舆论监督等行为，影响他人名誉的，不承担民事责任，但是有下列情形之一的除外：

（一）捏造、歪曲事实；

（二）对他人提供的严重失实内容未尽到合理核实义务；

（三）使用侮辱性言辞等贬损他人名誉。

第一千零二十六条 认定行为人是否尽到前条第二项规定的合理核实义务，应当考虑下列因素：

（一）内容来源的可信度；

（二）对明显可能引发争议的内容是否进行了必要的调查；

（三）内容的时限性；

（四）内容与公序良俗的关联性；

（五）受害人名誉受贬损的可能性；

（六）核实能力和核实成本。
"""

# A policy document numbered 一、（一）1., as a plain-text file: its parts are headings or items by the text alone.
POLICY = """关于推进城乡居民基本养老保险的实施意见
2023年3月15日

各市、县人民政府：

为进一步完善城乡居民基本养老保险制度，现提出如下意见。

一、总体要求
（一）指导思想。坚持以人民为中心，尽力而为、量力而行，逐步提高城乡居民基本养老保险待遇水平。
（二）基本原则。坚持全覆盖、保基本、有弹性、可持续。
二、主要任务
（一）扩大参保覆盖面。
1.年满16周岁、不是国家机关和事业单位工作人员的城乡居民，可以在户籍地参加城乡居民养老保险。
2.鼓励灵活就业人员参保。
（二）提高缴费档次。缴费档次设为每年200元至5000元共十四个档次，参保人自主选择档次缴费，多缴多得。
"""

# A question-and-answer interpretation as Word paragraphs without heading styles.
ANSWERS = [
    "人力资源社会保障部就工伤保险政策答记者问",
    "问：用人单位是否必须为职工缴纳工伤保险费？",
    "答：是的。根据《工伤保险条例》第二条，中华人民共和国境内的企业应当依照条例规定参加工伤保险，为本单位全部职工缴纳工伤保险费。",
    "职工个人不缴纳工伤保险费。",
    "问：工伤认定申请的时限是多久？",
    "答：用人单位应当自事故伤害发生之日起30日内提出工伤认定申请。",
]


def write_corpus(root: Path) -> Path:
    corpus = root / "corpus"
    (corpus / "民法典").mkdir(parents=True)
    (corpus / "民法典" / "人格权编.md").write_text(CIVIL_CODE, encoding="utf-8")
    (corpus / "养老保险实施意见(2023-03-15).txt").write_text(POLICY, encoding="utf-8")
    document = docx.Document()
    for line in ANSWERS:
        document.add_paragraph(line)
    document.core_properties.title = "工伤保险政策问答"
    document.save(corpus / "问答.docx")
    return corpus


def passages_of(tmp_path, max_unit_chars=300):
    documents, problems = read_corpus(write_corpus(tmp_path))
    assert problems == []
    return documents, make_passages(documents, max_chars=120, max_unit_chars=max_unit_chars)


def test_a_law_is_cited_by_its_articles_under_its_title_and_headings(tmp_path):
    documents, passages = passages_of(tmp_path)
    law = next(d for d in documents if d.source == "民法典/人格权编.md")
    assert (law.title, law.date) == ("中华人民共和国民法典", "2021-01-01")
    cited = [(p.citation(), p.text[:12]) for p in passages if p.source == law.source]
    assert cited == [
        ("《中华人民共和国民法典》 人格权编", "2020年5月28日 第"),  # the preamble, by sentences
        ("《中华人民共和国民法典》 人格权编 › 第五章 名誉权和荣誉权 › 第一千零二十四条", "第一千零二十四条 民事主"),
        ("《中华人民共和国民法典》 人格权编 › 第五章 名誉权和荣誉权 › 第一千零二十五条", "第一千零二十五条 行为人"),
        ("《中华人民共和国民法典》 人格权编 › 第五章 名誉权和荣誉权 › 第一千零二十六条", "第一千零二十六条 认定行"),
    ]
    article = next(p for p in passages if p.label == "第一千零二十五条")
    assert article.text.endswith("（三）使用侮辱性言辞等贬损他人名誉。")  # its items are part of it
    assert law.text[article.start : article.end] == article.text


def test_a_long_article_is_cut_between_its_paragraphs_and_every_part_keeps_its_label(tmp_path):
    _, passages = passages_of(tmp_path, max_unit_chars=60)
    parts = [p for p in passages if p.label == "第一千零二十六条"]
    assert len(parts) > 1 and all(len(p.text) <= 60 for p in parts)
    assert parts[0].text.startswith("第一千零二十六条") and parts[1].text.startswith("（")
    assert parts[1].embedding_text() == (
        "中华人民共和国民法典 人格权编 第五章 名誉权和荣誉权\n第一千零二十六条 " + parts[1].text
    )
    # No passage holds the end of one article and the start of the next.
    assert not any("第一千零二十五条" in p.text and "第一千零二十六条" in p.text for p in passages)


def test_a_numbered_policy_document_has_headings_and_items(tmp_path):
    documents, passages = passages_of(tmp_path)
    policy = next(d for d in documents if d.source.endswith(".txt"))
    assert (policy.title, policy.date) == ("养老保险实施意见", "2023-03-15")
    cited = [p.citation() for p in passages if p.source == policy.source]
    assert cited == [
        "《养老保险实施意见》",
        "《养老保险实施意见》 一、总体要求 › （一）指导思想",
        "《养老保险实施意见》 一、总体要求 › （二）基本原则",
        "《养老保险实施意见》 二、主要任务 › （一）扩大参保覆盖面",
        "《养老保险实施意见》 二、主要任务 › （二）提高缴费档次",
    ]
    item = next(p for p in passages if p.label == "（一）扩大参保覆盖面")
    assert item.text.startswith("（一）扩大参保覆盖面。\n1.年满16周岁") and item.text.endswith("鼓励灵活就业人员参保。")


def test_a_question_and_answer_interpretation_is_cited_by_its_questions(tmp_path):
    documents, passages = passages_of(tmp_path)
    answers = next(d for d in documents if d.source == "问答.docx")
    assert answers.title == "工伤保险政策问答"  # the file's metadata: no heading style names it
    cited = [(p.label, p.text[-8:]) for p in passages if p.source == answers.source]
    assert cited == [
        ("", "保险政策答记者问"),
        ("问：用人单位是否必须为职工缴纳工伤保险费？", "缴纳工伤保险费。"),
        ("问：工伤认定申请的时限是多久？", "出工伤认定申请。"),
    ]


def test_text_without_structure_is_packed_by_sentences_as_before():
    text = "第一句话讲政策背景。第二句话讲做法。\n第三句话讲成效，没有编号。"
    assert [(u.label, text[u.start : u.end]) for u in units(text, 0, len(text))] == [("", text)]


def test_a_numbered_line_that_ends_a_sentence_is_an_item_not_a_heading():
    text = "一、总体要求\n1.坚持党的领导。\n2.坚持人民至上。\n"
    found = [(u.label, u.headings, text[u.start : u.end].strip()) for u in units(text, 0, len(text))]
    assert found == [("1.坚持党的领导", ("一、总体要求",), "1.坚持党的领导。"), ("2.坚持人民至上", ("一、总体要求",), "2.坚持人民至上。")]


def test_heading_paths_nest_by_level_and_leave_out_the_title():
    title = Heading("法", 0, 3, 1)
    headings = [title, Heading("第一编", 4, 8, 1), Heading("第一章", 9, 13, 2), Heading("第二章", 14, 18, 2), Heading("第二编", 19, 23, 1)]
    assert heading_paths(headings, title) == [(), ("第一编",), ("第一编", "第一章"), ("第一编", "第二章"), ("第二编",)]


def test_dates_and_titles_from_file_names_and_openings():
    assert document_date("经济法/建筑法(2019-04-23).md", "") == "2019-04-23"
    assert document_date("a.md", "1997年11月1日通过\n2011年4月22日修正\n") == "2011-04-22"
    assert document_date("a.md", "x" * 2000 + "2011年4月22日") == ""  # only the opening states the version
    assert fallback_title("经济法/建筑法(2019-04-23).md") == "建筑法"

"""The case-table importer, tested on the real seed file."""

import pytest

from qa.documents.cases import import_cases, parse_case_table
from qa.errors import ImportCasesError

from ..conftest import SEED, SEED_CORPUS

TITLES = [
    "为民办实事20年持续增进民生福祉",
    "万亩千亿新产业平台引领高质量发展",
    "小微企业园重塑块状特色经济新优势",
    "致富果促进农民增收",
    "培育特色劳务品牌带动百姓就业增收",
    "一亩万元助力农民农村共同富裕",
    "拯救老屋带动乡村振兴",
    "诗画浙江建设促进区域联动发展",
    "医学检查检验结果互认共享改革实现群众就医省时省心省钱",
    "浙江有礼丰富人民精神生活",
]


@pytest.fixture(scope="module")
def seed_table():
    return parse_case_table(SEED.read_text(encoding="utf-8"))


def test_seed_titles_come_out_exactly(seed_table):
    assert seed_table.title == "浙江高质量发展建设共同富裕示范区第二批典型经验"
    assert [case.number for case in seed_table.cases] == list(range(1, 11))
    assert [case.title for case in seed_table.cases] == TITLES


def test_seed_text_has_no_extraction_artifacts(seed_table):
    for case in seed_table.cases:
        assert " " not in case.text and "\n" not in case.text, case.number
        assert case.text.endswith("。"), case.number
        assert not case.text.startswith(case.title)
    texts = {case.number: case.text for case in seed_table.cases}
    assert "布局建设浙东唐诗之路" in texts[8] and "141颗“诗路珍珠”" in texts[8]
    assert "制定出台15套数字化标准" in texts[9] and "对30天内符合" in texts[9]
    assert texts[1].startswith("每年将十方面民生实事纳入省政府工作报告，公开征集")
    assert texts[2].endswith("推动平台研、建、投、融、招、服、营等多位一体发展。")
    assert texts[10].endswith("百个有礼实践。")


def test_seed_markdown_layout(seed_table):
    markdown = seed_table.to_markdown()
    assert markdown.startswith("# 浙江高质量发展建设共同富裕示范区第二批典型经验\n\n## 1 为民办实事20年持续增进民生福祉\n\n每年将")
    assert markdown.count("\n## ") == 10


def test_committed_seed_corpus_is_the_import_of_the_seed(tmp_path):
    target = import_cases(SEED, tmp_path)
    committed = SEED_CORPUS / target.name
    assert committed.read_text(encoding="utf-8") == target.read_text(encoding="utf-8")


def test_import_refuses_to_overwrite_without_flag(tmp_path):
    import_cases(SEED, tmp_path, name="seed")
    with pytest.raises(ImportCasesError, match="seed.md already exists; pass --overwrite"):
        import_cases(SEED, tmp_path, name="seed")
    import_cases(SEED, tmp_path, name="seed", overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["seed.md"]


def test_number_in_content_is_not_a_new_case():
    table = parse_case_table("标题\n序号 名称 主要内容\n1\n第一个\n案例\n\n共有\n2 个项目。\n 2 第二\n个案例\n\n内容 二。\n")
    assert [(c.number, c.title, c.text) for c in table.cases] == [(1, "第一个案例", "共有2个项目。"), (2, "第二个案例", "内容二。")]


@pytest.mark.parametrize(
    "text, message",
    [
        ("just some text\n", "no table header '序号 名称 主要内容' found"),
        ("标题\n序号 名称 主要内容\n\n", "no numbered cases found"),
        ("标题\n序号 名称 主要内容\n1\n标题\n", "case 1 (标题) has no content"),
        ("序号 名称 主要内容\n1\n标题\n\n内容。", "no document title found"),
    ],
)
def test_bad_tables_are_named_errors(text, message):
    with pytest.raises(ImportCasesError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_case_table(text)


def test_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(ImportCasesError, match="no such file"):
        import_cases(tmp_path / "nope.txt", tmp_path)
    gbk = tmp_path / "gbk.txt"
    gbk.write_bytes("标题\n序号 名称 主要内容\n".encode("gbk"))
    with pytest.raises(ImportCasesError, match="not UTF-8 text"):
        import_cases(gbk, tmp_path)

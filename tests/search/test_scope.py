"""Questions limited to collections and documents (qa/search/scope.py): names resolved or refused with the
nearest ones, and the limit applied inside retrieval, so that k passages of the scope come back, scoring every
passage (the corpus's ranking with the other passages left out) and scoring candidates (HNSW searched
with a selector, BM25 chosen within the scope), with the real model over a small library in folders."""

import numpy as np
import pytest

from qa.assistant import Assistant
from qa.errors import ScopeError
from qa.passages import Passage
from qa.search.retrieval import HybridRetriever
from qa.search.scope import Library
from qa.store import local

from ..helpers import make_corpus


def sections(*sentences: str) -> str:
    """A Markdown document of one short section per sentence: each is a passage and a citation of its own."""
    return "".join(f"## {sentence[:6]}\n\n{sentence}\n\n" for sentence in sentences)


# A library in folders: 医疗 holds a nested collection (医疗/医保), 交通 a document with a version date in its name.
LIBRARY = {
    "医疗/检查互认.md": sections(
        "二级甲等及以上医疗机构之间检查检验结果互认。", "患者转诊时不必重复检查，节省费用。",
        "互认项目目录每年更新一次。", "检查影像资料通过云平台共享。"),
    "医疗/医保/报销.md": sections(
        "职工医保住院费用报销比例为百分之八十五。", "异地就医直接结算，不必先垫付。", "大病保险对高额费用再报销一次。"),
    "医疗/医保/门诊.md": sections("门诊慢特病费用纳入统筹基金支付。", "普通门诊起付线为每年五百元。"),
    "农业/茶叶.md": sections(
        "推进茶旅融合发展，建设茶文化公园。", "茶叶种植面积稳定在一百万亩。", "培育茶叶区域公用品牌。",
        "茶农可申请良种补贴。"),
    "农业/粮食.md": sections("粮食生产功能区建设标准农田。", "种粮大户享受农机购置补贴。", "稻谷最低收购价保持稳定。"),
    "交通/公交.txt": "城市公交实行刷码乘车，七十岁以上老年人免费乘坐公交车。",
    "交通/地铁(2023-05-01).md": sections("地铁票价按里程分段计价。", "学生乘坐地铁享受半价优惠。"),
    "总则.md": sections("本汇编收录医疗、农业和交通方面的政策。"),
}
QUESTION = "哪些医院之间检查结果互认？"


@pytest.fixture(scope="module")
def library(tmp_path_factory, embedder) -> Assistant:
    assistant = Assistant(make_corpus(tmp_path_factory.mktemp("library"), LIBRARY), embedder)
    assistant.rebuild()
    return assistant


def sources_of(answer) -> list[str]:
    return [passage.source for passage in answer.passages]


# --- collections and documents -------------------------------------------------------------


def test_collections_are_the_folders_at_every_depth_with_their_documents_counted(library):
    assert library.collections() == [("交通", 2), ("农业", 2), ("医疗", 3), ("医疗/医保", 2)]
    assert library.documents() == sorted(LIBRARY)


def test_a_collection_gives_only_its_passages_and_k_of_them(library):
    unlimited = library.ask(QUESTION, k=5)
    assert unlimited.within == () and sources_of(unlimited)[0] == "医疗/检查互认.md"
    answer = library.ask(QUESTION, k=5, within=["农业"])
    # 农业 holds 7 passages, each a section of its own: 5 come back, whatever they score.
    assert len(answer.passages) == 5 and all(source.startswith("农业/") for source in sources_of(answer))
    assert answer.within == ("农业",)
    # All of a collection smaller than k.
    assert sorted(sources_of(library.ask(QUESTION, k=10, within=["交通"]))) == ["交通/公交.txt"] + ["交通/地铁(2023-05-01).md"] * 2


def test_a_nested_collection_and_its_parent(library):
    answer = library.ask("住院费用能报销多少？", k=5, within=["医疗/医保"])
    assert set(sources_of(answer)) == {"医疗/医保/报销.md", "医疗/医保/门诊.md"} and len(answer.passages) == 5
    assert sources_of(answer)[0] == "医疗/医保/报销.md"
    answer = library.ask("住院费用能报销多少？", k=9, within=["医疗/"])  # a trailing / is the same folder
    assert answer.within == ("医疗",) and len(answer.passages) == 9
    assert {source.rsplit("/", 1)[0] for source in sources_of(answer)} == {"医疗", "医疗/医保"}


def test_documents_by_path_or_by_a_name_only_they_have(library):
    answer = library.ask(QUESTION, k=3, within=["交通/公交.txt"])
    assert sources_of(answer) == ["交通/公交.txt"] and answer.within == ("交通/公交.txt",)
    # The file name without its suffix and its version date names the document: the answer says which.
    answer = library.ask("学生坐地铁有优惠吗？", k=3, within=["地铁"])
    assert answer.within == ("交通/地铁(2023-05-01).md",)
    assert sources_of(answer) == ["交通/地铁(2023-05-01).md"] * 2
    assert answer.passages[0].text == "学生乘坐地铁享受半价优惠。"


def test_several_collections_and_documents_together(library):
    answer = library.ask("有哪些补贴？", k=10, within=["农业", "交通/公交.txt", "农业/茶叶.md"])
    assert answer.within == ("农业", "交通/公交.txt", "农业/茶叶.md")
    assert len(answer.passages) == 8 and set(sources_of(answer)) == {"农业/茶叶.md", "农业/粮食.md", "交通/公交.txt"}
    # No names (or None) is the whole corpus.
    assert library.ask("有哪些补贴？", k=10, within=[]).to_json() == library.ask("有哪些补贴？", k=10).to_json()


def test_unknown_names_are_refused_with_the_nearest_ones(library):
    with pytest.raises(ScopeError) as error:
        library.ask(QUESTION, within=["医了"])
    assert str(error.value) == '"医了" is neither a collection nor a document of the corpus; did you mean: 医疗?'
    with pytest.raises(ScopeError) as error:
        library.ask(QUESTION, within=["农业", "地跌", "医疗/医宝"])
    assert str(error.value) == (
        '"地跌" is neither a collection nor a document of the corpus; did you mean: 地铁?; '
        '"医疗/医宝" is neither a collection nor a document of the corpus; did you mean: 医疗/医保?')
    with pytest.raises(ScopeError) as error:
        library.ask(QUESTION, within=["xyzzy"])
    assert str(error.value) == '"xyzzy" is neither a collection nor a document of the corpus; its collections are: 交通, 农业, 医疗'


def test_a_name_several_documents_share_is_refused_with_them():
    passages = [Passage(id=i, source=source, section="", start=0, end=1, text="x")
                for i, source in enumerate(["甲/条例.md", "乙/条例(2020-01-01).md", "乙/办法.md"])]
    with pytest.raises(ScopeError) as error:
        Library(passages).scope(["条例"])
    assert str(error.value) == '"条例" names 2 documents: 乙/条例(2020-01-01).md, 甲/条例.md; name one by its path'
    # A collection's name comes first; a document's source and its unique names after.
    scope = Library(passages).scope(["乙", "办法", "甲/条例.md"])
    assert (scope.collections, scope.documents) == (("乙",), ("乙/办法.md", "甲/条例.md"))
    assert list(scope.rows) == [0, 1, 2] and scope.sources == ("乙/办法.md", "乙/条例(2020-01-01).md", "甲/条例.md")


def test_a_collection_is_a_whole_folder_name_not_a_prefix():
    passages = [Passage(id=i, source=source, section="", start=0, end=1, text="x")
                for i, source in enumerate(["民法/a.md", "民法典/b.md", "民法典/编/c.md", "民法典.md"])]
    library = Library(passages)
    assert library.collections == [("民法", 1), ("民法典", 2), ("民法典/编", 1)]
    assert list(library.scope(["民法典"]).rows) == [1, 2]
    assert list(library.scope(["民法"]).rows) == [0]
    assert list(library.scope("民法典.md").rows) == [3]  # one name may be given as a string


# --- inside retrieval ----------------------------------------------------------------------


def test_scoring_every_passage_a_scope_keeps_the_corpus_ranking(library):
    """Limited to a scope, the hits are the unlimited ranking's hits of that scope, in the same order with the
    same scores (Chinese questions: an English one's second opinion re-reads the scope's own best passages)."""
    retriever = library._serving()[1]
    assert retriever.score_all
    everything = len(retriever.passages)
    for names in (["农业"], ["医疗/医保", "交通/公交.txt"], ["总则.md"]):
        scope = retriever.library.scope(names)
        for question in (QUESTION, "有哪些补贴？", "老年人坐公交免费吗？", "茶旅融合"):
            limited = retriever.search(question, 4, within=scope)
            kept = [hit for hit in retriever.search(question, everything) if scope.mask[hit.passage.id]][:4]
            assert [(hit.passage, hit.score, hit.similarity, hit.keyword, hit.coverage) for hit in limited] == [
                (hit.passage, hit.score, hit.similarity, hit.keyword, hit.coverage) for hit in kept]
            assert len(limited) == min(4, len(scope.rows))


@pytest.fixture(scope="module")
def approximate(library, tmp_path_factory, embedder) -> Assistant:
    """The same library over an HNSW index, scoring candidates (a small `approximate_from`)."""
    config = library.config.with_overrides(index_dir=tmp_path_factory.mktemp("hnsw"), vector_index="auto", approximate_from=10)
    assistant = Assistant(config, embedder)
    assistant.rebuild()
    assert assistant.index.approximate and not assistant._serving()[1].score_all
    return assistant


@pytest.mark.parametrize("exact_within", [local.EXACT_WITHIN, 0])  # 0: a scope's share of HNSW searched without the limit
def test_scoring_candidates_a_scope_gives_k_of_its_passages(approximate, library, monkeypatch, exact_within):
    monkeypatch.setattr(local, "EXACT_WITHIN", exact_within)
    for names, question in ((["农业"], QUESTION), (["医疗/医保", "交通"], "茶旅融合"), (["地铁"], "检查结果互认")):
        answer = approximate.ask(question, k=4, within=names)
        scope = approximate._serving()[1].library.scope(names)
        assert len(answer.passages) == min(4, len(scope.rows))
        assert set(sources_of(answer)) <= set(scope.sources)
        # The candidates cover this small library: the same answer as scoring every passage.
        assert answer.to_json() == library.ask(question, k=4, within=names).to_json()


def test_the_library_is_read_once_per_index(library):
    retriever: HybridRetriever = library._serving()[1]
    assert retriever.library is retriever.library
    assert retriever.library.scope(["农业"]) is retriever.library.scope(["农业"])  # scopes asked for are kept
    assert np.array_equal(retriever.library.scope(["农业", "交通"]).rows, retriever.library.scope(["交通", "农业"]).rows)

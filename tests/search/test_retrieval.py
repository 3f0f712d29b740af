"""Keyword index, fusion and the hybrid retriever, on small real Chinese text with the real model."""

import math

import numpy as np
import pytest

from qa.assistant import Assistant
from qa.config import FUSIONS, Config
from qa.errors import ConfigError, IndexCorruptError
from qa.search.keyword import KEYWORDS_FILE, KeywordIndex, load_keywords, tokenize
from qa.search.question import read_questions
from qa.search.retrieval import HybridRetriever
from qa.search.sections import section_groups

from ..helpers import make_corpus

# Three short cases in the seed's style; each question below is answered by one sentence.
CORPUS = """# 典型经验

## 1 医学检查检验结果互认

统一构建医学检查检验项目编码规则目录库。二级甲等及以上医疗机构间，对30天内符合规定的检查检验报告予以互认。推出“浙医互认”应用。

## 2 小微企业园

编制小微企业园发展规划，加快推动小微企业入园集聚发展。推动实施“低散乱”整治提升行动。以担保贷款、扩岗补助等方式鼓励支持小微企业园吸纳就业。

## 3 有礼浙江

深化礼让斑马线、聚餐用公筷等十大文明行动。建设有礼地标，选树百个有礼单元。
"""

QUESTIONS = [
    ("浙医互认是什么应用？", "1 医学检查检验结果互认", "推出“浙医互认”应用。"),
    ("怎样整治低散乱企业？", "2 小微企业园", "推动实施“低散乱”整治提升行动。"),
    ("开车礼让行人属于哪项文明行动？", "3 有礼浙江", "深化礼让斑马线、聚餐用公筷等十大文明行动。"),
]


# --- keyword index -------------------------------------------------------------------------


def test_tokenize_words_and_bigrams():
    assert tokenize("浙医互认", "bigrams") == ["浙医", "医互", "互认"]
    assert tokenize("检查结果互认", "words") == ["w:检查", "w:结果", "w:互认"]
    # Latin words are lower-cased and kept whole; stop words (the, and the bigram 什么) are dropped.
    assert tokenize("The 2V2 模式的什么", "bigrams") == ["2v2", "模式", "式的", "的什"]
    with pytest.raises(ValueError, match="unknown keyword tokenizer 'letters'"):
        tokenize("文本", "letters")


def test_bm25_scores_by_hand():
    index = KeywordIndex.build(["医院互认", "医院"], tokenizer="bigrams")
    # Bigrams: text 0 = 医院 院互 互认 (3 tokens), text 1 = 医院 (1 token); mean length 2.
    # idf(互认) = ln(1 + (2 - 1 + 0.5) / (1 + 0.5)) = ln 2; tf = 1, k1 = 1.2, b = 0.75:
    # score = ln 2 · 1 · 2.2 / (1 + 1.2 · (0.25 + 0.75 · 3 / 2))
    expected = math.log(2) * 2.2 / (1 + 1.2 * (0.25 + 0.75 * 1.5))
    assert index.scores(["互认"]) == pytest.approx(np.array([[expected, 0.0]]), rel=1e-6)
    # 医院 is in both texts: idf = ln(1 + 0.5 / 2.5); the short text scores higher.
    idf = math.log(1.2)
    short = idf * 2.2 / (1 + 1.2 * (0.25 + 0.75 * 0.5))
    long = idf * 2.2 / (1 + 1.2 * (0.25 + 0.75 * 1.5))
    assert index.scores(["医院"]) == pytest.approx(np.array([[long, short]]), rel=1e-6)


def test_coverage_is_the_share_of_question_weight_found():
    index = KeywordIndex.build(["医院互认", "医院"], tokenizer="bigrams")
    idf_hospital, idf_mutual = math.log(1.2), math.log(2)
    unknown = math.log(1 + 2.5 / 0.5)  # a term the corpus lacks counts with the highest idf
    coverage = index.coverage(["医院互认", "医院火车"])
    # 医院互认 -> 医院, 院互, 互认: all in text 0; text 1 holds only 医院 (idf(院互) = idf(互认) = ln 2).
    assert coverage[0] == pytest.approx([1.0, idf_hospital / (idf_hospital + 2 * idf_mutual)], rel=1e-6)
    # 医院火车 -> 医院 (known), 院火 and 火车 (unknown).
    assert coverage[1] == pytest.approx([idf_hospital / (idf_hospital + 2 * unknown)] * 2, rel=1e-6)


def test_unknown_words_and_empty_questions_score_zero():
    index = KeywordIndex.build(["医院互认", "小微企业园"])
    assert not index.scores(["sourdough bread", "", "？？"]).any()
    assert not index.coverage(["sourdough bread", ""]).any()


def test_sections_sum_their_passages_counts():
    index = KeywordIndex.build(["医院互认", "医院", "小微企业"], tokenizer="bigrams")
    sections = index.grouped(np.array([0, 0, 1]))
    assert sections.counts.toarray().sum(axis=1).tolist() == [4.0, 3.0]
    assert sections.scores(["医院"])[0, 1] == 0 and sections.scores(["医院"])[0, 0] > 0


def test_words_of_the_document_name_count_for_every_section_of_it():
    from qa.passages import Passage
    from qa.search.keyword import build_keywords

    # 浙江 names the whole file; only the first case repeats it in its text. Without the name in the
    # keyword text, 浙江 pointed at that case alone (English questions saying "Zhejiang" went there).
    courtesy = Passage(0, "浙江/浙江典型经验.md", "1 文明实践", 0, 9, "培育浙江有礼品牌。")
    rice = Passage(1, "浙江/浙江典型经验.md", "2 一亩万元", 9, 16, "推广稻田养鱼。")
    assert rice.keyword_text() == "浙江典型经验\n2 一亩万元\n推广稻田养鱼。"
    scores = build_keywords([courtesy, rice]).scores(["浙江的经验"])[0]
    assert scores[1] > 0.5 * scores[0] > 0


def test_save_load_gives_identical_scores_and_rejects_damage(tmp_path):
    index = KeywordIndex.build([text for _, _, text in QUESTIONS] + ["一个文档"])
    path = tmp_path / KEYWORDS_FILE
    index.save(path)
    loaded = KeywordIndex.load(path, rows=4)
    questions = [q for q, _, _ in QUESTIONS]
    assert np.array_equal(loaded.scores(questions), index.scores(questions))
    assert loaded.tokenizer == "words+bigrams" and loaded.vocabulary == index.vocabulary
    with pytest.raises(IndexCorruptError, match="has 4 rows .* expected 5 rows"):
        KeywordIndex.load(path, rows=5)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(IndexCorruptError, match="cannot be read as a keyword index"):
        KeywordIndex.load(path, rows=4)


# --- retrievers, one suite for every fusion ----------------------------------------------


def sentences(**settings) -> Config:
    """Settings that cite single sentences, as the small index below is cut."""
    return Config(max_passage_chars=1, max_citation_share=0, **settings)


@pytest.fixture(scope="module")
def small(tmp_path_factory, embedder):
    config = make_corpus(tmp_path_factory.mktemp("small"), {"cases.md": CORPUS}, max_passage_chars=1)
    assistant = Assistant(config, embedder)
    assistant.rebuild()
    return assistant


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("question, section, sentence", QUESTIONS)
def test_every_retriever_finds_the_answering_sentence(small, fusion, question, section, sentence):
    retriever = HybridRetriever.from_index(small.index, small.embedder, sentences(fusion=fusion))
    hits = retriever.search(question, 3)
    assert [hit.passage.text for hit in hits][:1] == [sentence]
    assert hits[0].passage.section == section
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_every_retriever_handles_batches_and_small_k(small, fusion):
    retriever = HybridRetriever.from_index(small.index, small.embedder, sentences(fusion=fusion))
    questions = [q for q, _, _ in QUESTIONS]
    batch = retriever.search_many(questions, 2)
    assert [len(hits) for hits in batch] == [2, 2, 2]
    assert [hits[0].passage.id for hits in batch] == [retriever.search(q, 2)[0].passage.id for q in questions]
    assert len(retriever.search(questions[0], 1000)) == len(small.index.passages)
    assert retriever.search_many([], 3) == []


def test_a_converted_question_is_embedded_both_ways_in_one_encoder_call(small):
    """The question in the corpus's script and as written go to the encoder together (one batch, one run);
    its vector is the normalised mean of the two, its written vector the written form's alone."""
    calls = []

    class Counting:  # the real encoder, its calls counted
        def embed_questions(self, texts):
            calls.append(list(texts))
            return small.embedder.embed_questions(texts)

    asked = read_questions(["哪些医院检查结果互认？", "农村公路怎么养护？"], ["哪些醫院檢查結果互認？", "农村公路怎么养护？"],
                           Counting(), load_keywords(small.index))
    assert calls == [["哪些医院检查结果互认？", "农村公路怎么养护？", "哪些醫院檢查結果互認？"]]
    alone = small.embedder.embed_questions(["哪些医院检查结果互认？", "哪些醫院檢查結果互認？", "农村公路怎么养护？"])
    mean = (alone[0] + alone[1]) / np.linalg.norm(alone[0] + alone[1])
    assert np.allclose(asked[0].vector, mean, atol=1e-5) and np.allclose(asked[0].written_vector, alone[1], atol=1e-5)
    assert np.allclose(asked[1].vector, alone[2], atol=1e-5) and np.allclose(asked[1].written_vector, alone[2], atol=1e-5)


def test_without_keyword_matches_the_ranking_is_the_dense_one(small):
    """No keyword (nor any translation of the English words) occurs in the corpus: fusion leaves the dense order."""
    retriever = HybridRetriever.from_index(small.index, small.embedder, sentences(fusion="sum"))
    hits = retriever.search("How do I bake sourdough bread?", len(small.index.passages))
    assert all(hit.keyword == 0 and hit.coverage == 0 for hit in hits)
    assert [hit.similarity for hit in hits] == sorted((hit.similarity for hit in hits), reverse=True)


def test_english_words_find_chinese_keywords_through_the_dictionary(small):
    retriever = HybridRetriever.from_index(small.index, small.embedder, sentences())
    hit = retriever.search("What are the courtesy landmarks?", 1)[0]
    assert hit.passage.section == "3 有礼浙江"  # courtesy -> 礼让, landmark -> 地标
    assert hit.keyword > 0.5 and hit.coverage == 1.0  # both concepts found in the section


def test_citation_grows_to_a_share_of_its_section_with_exact_offsets(small):
    """Sentences are the passages here; the cited passage adds the best neighbours up to a share of the section."""
    retriever = HybridRetriever.from_index(small.index, small.embedder, Config(max_passage_chars=1, max_citation_share=0.8))
    hits = retriever.search("怎样整治低散乱企业？", 3)
    top = hits[0]
    text = (small.config.corpus_dir / "cases.md").read_text(encoding="utf-8")
    assert text[top.passage.start : top.passage.end] == top.passage.text
    assert "推动实施“低散乱”整治提升行动。" in top.passage.text
    section = [p for p in small.index.passages if p.section == top.passage.section]
    # The section is 27 + 16 + 34 characters: the window is the matching sentence and one neighbour.
    assert len(top.passage.text) in (16 + 27, 16 + 34)
    assert len(top.passage.text) <= 0.8 * (section[-1].end - section[0].start)
    # No sentence is cited twice.
    spans = sorted((hit.passage.start, hit.passage.end) for hit in hits if hit.passage.source == top.passage.source)
    assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:]))


def test_section_groups_follow_source_and_heading(small):
    groups = section_groups(small.index.passages)
    sections = [p.section for p in small.index.passages]
    assert groups.tolist() == [["1 医学检查检验结果互认", "2 小微企业园", "3 有礼浙江"].index(s) for s in sections]


def test_missing_keyword_file_is_a_named_error(small, tmp_path):
    path = small.index.folder / KEYWORDS_FILE
    saved = path.read_bytes()
    path.unlink()
    try:
        with pytest.raises(IndexCorruptError, match=f"{KEYWORDS_FILE} is missing; run `qa build`"):
            HybridRetriever.from_index(small.index, small.embedder, small.config)
    finally:
        path.write_bytes(saved)


def test_unknown_fusion_is_refused():
    with pytest.raises(ConfigError, match="^fusion must be one of dense, keyword, rrf, sum, sections, not 'best'$"):
        Config(fusion="best")


def test_a_one_passage_corpus(embedder):
    from qa.passages import Passage
    from qa.search.keyword import build_keywords

    passage = Passage(id=0, source="one.md", section="", start=0, end=16, text="推动实施“低散乱”整治提升行动。")
    vectors = embedder.embed_passages([passage.embedding_text()])
    for fusion in FUSIONS:
        retriever = HybridRetriever([passage], vectors, build_keywords([passage]), embedder, Config(fusion=fusion))
        hits = retriever.search("低散乱", 5)
        assert [hit.passage for hit in hits] == [passage]
        assert hits[0].keyword == 1.0 and hits[0].coverage == 1.0


def test_a_tuned_models_fitted_weights_replace_the_defaults_and_a_bad_file_is_a_named_error(tmp_path):
    import json

    from qa.errors import ModelError
    from qa.search.fusion import WEIGHTS_FILE, with_model_weights

    model = tmp_path / "tuned"
    model.mkdir()
    config = Config(model=str(model))
    assert with_model_weights(config) == config  # no file: the defaults
    (model / WEIGHTS_FILE).write_text(json.dumps({"keyword_weight": 0.05, "section_weight": 0.1, "tried": []}))
    fitted = with_model_weights(config)
    assert (fitted.keyword_weight, fitted.section_weight) == (0.05, 0.1)
    assert Assistant(config).config == fitted  # every Assistant with the model takes them
    (model / WEIGHTS_FILE).write_text('{"keyword_weight": 3}')
    with pytest.raises(ModelError, match="retrieval.json: a weight outside 0..1"):
        with_model_weights(config)
    (model / WEIGHTS_FILE).write_text("{not json")
    with pytest.raises(ModelError, match="cannot read .*retrieval.json \\(the retrieval weights fitted with this model\\)"):
        with_model_weights(config)

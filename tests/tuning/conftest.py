"""The fixture `qa tune`'s and `qa remember`'s tests share: the library of tests/tuning/data, built."""

import shutil
from pathlib import Path

import pytest

from ..helpers import run_qa

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """The two regulations of tests/tuning/data built with the bundled model (101 passages), once per module."""
    folder = tmp_path_factory.mktemp("library")
    shutil.copytree(DATA / "corpus", folder / "corpus")
    built = run_qa("build", "--corpus", str(folder / "corpus"), "--index", str(folder / "index"))
    assert built.exit_code == 0, built.output
    return folder

"""Where the page is served (qa/page/server.py): a busy port says which, and how to choose another, through
`qa serve` and app.py alike, without a traceback and before anything is built for a page that cannot start."""

import re
import socket
import subprocess
import sys

import pytest

from ..helpers import PROJECT, run_qa

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

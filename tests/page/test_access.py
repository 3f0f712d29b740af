"""Who and what the page lets in (issue 14, qa/page/access.py): only the host names it was given, logins
throttled, no uploads, requests within the size limit (refused unread, one line in the server's log),
and a bounded number of events waiting per session and per address.

Checked as middleware without Gradio, and over HTTP against a running page: with httpx and with a
raw socket, so that the Host header is exactly what a DNS-rebinding page would send.
"""

import asyncio
import json
import socket
import time
import uuid
from pathlib import Path

import gradio as gr
import httpx
import pytest
from starlette.middleware import Middleware

from qa.config import PageSettings, page_settings_from_env, parse_host_names, read_auth_file
from qa.errors import ConfigError
from qa.page.access import Gate, LoginThrottle, body_limit, host_names, requested_host

from ..conftest import SEED_CORPUS
from ..helpers import HTTP_TIMEOUT, run_qa, running_page

FOREIGN = "unknown host name 'evil.example': this page answers only to the names it was given (--public-name or QA_PUBLIC_NAMES)"


# --- which names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header, host",
    [("127.0.0.1:7860", "127.0.0.1"), ("LocalHost", "localhost"), ("[::1]:7860", "::1"), ("qa.example.org.:443", "qa.example.org"),
     ("evil.example", "evil.example"), ("", None), (None, None), ("[::1", None), ("a:b", None), ("[::1]x", None), (":80", None)],
)
def test_the_host_a_header_names(header, host):
    assert requested_host(header) == host


def test_the_names_a_page_answers_to():
    assert host_names("127.0.0.1") == {"127.0.0.1", "localhost", "::1"}
    assert host_names("0.0.0.0") == host_names("::") == {"127.0.0.1", "localhost", "::1"}
    assert host_names("qa-box.lan", ("qa.example.org",)) == {"127.0.0.1", "localhost", "::1", "qa-box.lan", "qa.example.org"}
    assert host_names("0.0.0.0", share=True) == {"127.0.0.1", "localhost", "::1", "*.gradio.live"}


def test_public_names_come_from_the_flag_or_the_environment():
    assert parse_host_names("qa.example.org, QA2.example.org.,[2001:db8::1]") == ("qa.example.org", "qa2.example.org", "2001:db8::1")
    assert page_settings_from_env({"QA_PUBLIC_NAMES": "qa.example.org"}).public_names == ("qa.example.org",)
    assert PageSettings().public_names == ()
    for bad in ("http://qa.example.org", "qa.example.org:8080", "a b", "qa.example.org,"):
        with pytest.raises(ConfigError) as error:
            page_settings_from_env({"QA_PUBLIC_NAMES": bad})
        shown = bad.split(",")[-1].strip() if bad.endswith(",") else bad
        assert str(error.value) == f"QA_PUBLIC_NAMES must be host names separated by commas, such as qa.example.org, not {shown!r}"


def test_qa_serve_gives_the_gate_its_names(seed_assistant, monkeypatch):
    for name in ("QA_HOST", "GRADIO_SERVER_NAME", "QA_AUTH", "QA_PUBLIC_NAMES"):
        monkeypatch.delenv(name, raising=False)
    launched = {}
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **options: launched.update(options))
    index = str(seed_assistant.config.index_dir)

    def gate(*flags: str, env: dict | None = None) -> dict:
        result = run_qa("serve", "--corpus", str(SEED_CORPUS), "--index", index, *flags, env=env)
        assert result.exit_code == 0, result.output
        middleware = launched["app_kwargs"]["middleware"]
        assert [m.cls for m in middleware] == [Gate] and isinstance(middleware[0], Middleware)
        return middleware[0].kwargs

    assert (gate()["names"], gate()["any_address"]) == ({"127.0.0.1", "localhost", "::1"}, False)
    flagged = gate("--host", "0.0.0.0", "--public-name", "qa.example.org", "--public-name", "QA.example.net")
    assert (flagged["names"], flagged["any_address"]) == ({"127.0.0.1", "localhost", "::1", "qa.example.org", "qa.example.net"}, True)
    assert gate(env={"QA_PUBLIC_NAMES": "qa.example.org"})["names"] == {"127.0.0.1", "localhost", "::1", "qa.example.org"}
    result = run_qa("serve", "--corpus", str(SEED_CORPUS), "--index", index, "--public-name", "http://x")
    assert result.exit_code == 1
    assert result.stderr == "Error: --public-name must be host names separated by commas, such as qa.example.org, not 'http://x'\n"


# --- the gate, without Gradio ------------------------------------------------------------------------


async def served(scope: dict, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def status_for(gate: Gate, host: str | None, kind: str = "http") -> int | str:
    """What `gate` answers a GET / naming `host`: the HTTP status, or 'closed' for a refused websocket."""
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    headers = [] if host is None else [(b"host", host.encode())]
    scope = {"type": kind, "method": "GET", "path": "/", "root_path": "", "client": ("10.0.0.1", 1), "headers": headers}
    asyncio.run(gate(scope, receive, send))
    return "closed" if sent[0]["type"] == "websocket.close" else sent[0]["status"]


def make_gate(names: frozenset[str], any_address: bool) -> Gate:
    return Gate(served, names=names, any_address=any_address, waiting=lambda: [], max_body_bytes=1000,
                max_waiting_per_session=8, max_waiting_per_address=64)


def test_the_gate_serves_only_the_names_it_was_given():
    loopback = make_gate(host_names("127.0.0.1"), any_address=False)
    assert [status_for(loopback, host) for host in ("127.0.0.1:7860", "localhost:7860", "[::1]:7860", "LOCALHOST")] == [200] * 4
    # Another name, another address, a malformed header, none at all: a loopback page answers none of them.
    assert [status_for(loopback, host) for host in ("evil.example", "evil.example:7860", "10.1.2.3", "[::1", None)] == [400] * 5
    assert status_for(loopback, "evil.example", kind="websocket") == "closed"
    # Listening on every address: any IP address (no DNS trick can name one), and the names given.
    public = make_gate(host_names("0.0.0.0", ("qa.example.org",)), any_address=True)
    assert [status_for(public, host) for host in ("192.168.1.10:7860", "[2001:db8::1]", "qa.example.org", "localhost")] == [200] * 4
    assert [status_for(public, host) for host in ("evil.example", "qa.example.org.evil.example", "example.org")] == [400] * 3
    shared = make_gate(host_names("127.0.0.1", share=True), any_address=False)
    assert (status_for(shared, "abc123.gradio.live"), status_for(shared, "gradio.live.evil.example")) == (200, 400)


# --- the gate's limits: the request's size, the events one client may have waiting ----------------


class Received:
    """An ASGI app that records the request bodies it receives and answers 200."""

    def __init__(self):
        self.bodies = []

    async def __call__(self, scope, receive, send):
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def call(app, path: str, chunks: list[bytes], headers: dict | None = None, client: str = "10.0.0.1", method: str = "POST"):
    """Send one request of `chunks` to the ASGI `app`: (status, JSON detail or body, chunks it read)."""
    pending = [{"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1} for i, chunk in enumerate(chunks)]
    read = []
    sent = []

    async def receive():
        if pending:
            read.append(pending[0]["body"])
            return pending.pop(0)
        await asyncio.sleep(3600)

    async def send(message):
        sent.append(message)

    headers = {"host": "127.0.0.1:7860"} | (headers or {})
    scope = {"type": "http", "method": method, "path": path, "root_path": "", "client": (client, 5000),
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    asyncio.run(app(scope, receive, send))
    status = sent[0]["status"]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return status, (json.loads(body)["detail"] if status != 200 else body.decode()), len(read)


def gate(received, waiting=(), **limits):
    settings = dict(max_body_bytes=1000, max_waiting_per_session=2, max_waiting_per_address=3) | limits
    return Gate(received, names=host_names("127.0.0.1"), any_address=False, waiting=lambda: list(waiting), **settings)


def test_the_gate_refuses_a_large_body_unread(caplog):
    received = Received()
    app = gate(received)
    assert call(app, "/gradio_api/queue/join", [b"x" * 600, b"y" * 400]) == (200, "ok", 2)
    assert received.bodies == [b"x" * 600 + b"y" * 400]  # handed on whole
    # Said to be too large: refused before a byte is read.
    status, detail, read = call(app, "/gradio_api/queue/join", [b"x" * 1001], {"content-length": "150000083"})
    assert (status, read) == (413, 0)
    assert detail == ("request too large: a request of 150,000,083 bytes is over this page's limit of 1,000 bytes "
                      "(ask a shorter question)")
    # Not said (chunked): refused at the chunk that passes the limit; the rest is never read.
    status, detail, read = call(app, "/gradio_api/call/ask", [b"x" * 600, b"y" * 600, b"z" * 600])
    assert (status, read) == (413, 2) and detail.startswith("request too large: a request is over this page's limit")
    assert len(received.bodies) == 1
    assert [r.getMessage() for r in caplog.records] == [
        "refused POST /gradio_api/queue/join from 10.0.0.1: request too large: a request of 150,000,083 bytes is over "
        "this page's limit of 1,000 bytes (ask a shorter question)",
        "refused POST /gradio_api/call/ask from 10.0.0.1: request too large: a request is over this page's limit of "
        "1,000 bytes (ask a shorter question)",
    ]


def test_the_gate_bounds_what_one_session_and_one_address_have_waiting():
    waiting = [("tab1", "10.0.0.1"), ("tab1", "10.0.0.1"), ("tab2", "10.0.0.1"), ("tab3", "10.0.0.2")]
    app = gate(Received(), waiting)

    def join(session: str, client: str = "10.0.0.9") -> tuple:
        return call(app, "/gradio_api/queue/join", [json.dumps({"session_hash": session}).encode()], client=client)[:2]

    assert join("tab1") == (429, "too many requests at once: this session already has 2 waiting or running (at most 2); "
                                 "wait for an answer first")
    assert join("tab2") == (200, "ok") and join("tab4", "10.0.0.2") == (200, "ok")
    assert join("tab4", "10.0.0.1") == (429, "too many requests at once: 3 from this address are waiting or running "
                                             "(at most 3); wait for an answer first")
    assert call(app, "/gradio_api/upload_progress", [b""], method="GET", client="10.0.0.1")[0] == 200  # only joins count


def test_the_body_limit_holds_a_question_at_the_limit():
    worst = json.dumps({"data": ["😀" * 20_000, 5], "fn_index": 12, "session_hash": uuid.uuid4().hex, "event_data": None})
    assert len(worst.encode()) < body_limit(20_000) < 400_000  # JSON-escaped surrogate pairs: 12 bytes a character


def test_a_burst_of_joins_counts_before_the_queue_has_them():
    # Joins that arrive together all pass the check before the first is in the queue; the gate counts
    # them from the moment they are let in, so a burst from one session is bounded all the same.
    release = asyncio.Event()

    async def slow_queue(scope, receive, send):
        await receive()
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    app = Gate(slow_queue, names=host_names("127.0.0.1"), any_address=False, waiting=lambda: [], max_body_bytes=1000,
               max_waiting_per_session=2, max_waiting_per_address=3)
    body = json.dumps({"session_hash": "tab1"}).encode()

    async def join(session: str) -> int:
        messages = [{"type": "http.request", "body": json.dumps({"session_hash": session}).encode(), "more_body": False}]
        sent = []

        async def receive():
            return messages.pop(0) if messages else await asyncio.sleep(3600)

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/gradio_api/queue/join", "root_path": "", "client": ("10.0.0.1", 1),
                 "headers": [(b"host", b"localhost:7860"), (b"content-length", str(len(body)).encode())]}
        await app(scope, receive, send)
        return sent[0]["status"]

    async def burst(sessions: tuple[str, ...]) -> list[int]:
        release.clear()
        joins = [asyncio.create_task(join(session)) for session in sessions]
        await asyncio.sleep(0.1)
        release.set()
        return await asyncio.gather(*joins)

    async def two_bursts() -> tuple[list[int], list[int]]:
        return await burst(("tab1",) * 4 + ("tab2",) * 2), await burst(("tab1", "tab1", "tab3"))

    first, second = asyncio.run(two_bursts())
    assert first == [200, 200, 429, 429, 200, 429]  # tab2's second: the address has 3 in flight
    # Nothing counted once the joins are done: the session and the address have their whole allowance again.
    assert second == [200, 200, 200]


# --- over HTTP ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def page(seed_assistant, tmp_path_factory):
    """The chat page on 127.0.0.1 (the default) without a login, over the seed index."""
    folder = tmp_path_factory.mktemp("access")
    flags = ("--corpus", str(SEED_CORPUS), "--index", str(seed_assistant.config.index_dir), "--feedback", str(folder / "feedback.jsonl"))
    uploads = folder / "gradio-files"  # where Gradio keeps what is uploaded (GRADIO_TEMP_DIR)
    with running_page(*flags, log=folder / "app.log", env={"QA_AUTH": "", "GRADIO_TEMP_DIR": str(uploads)}) as running:
        yield running


def raw_request(url: str, request: bytes) -> bytes:
    """Send `request` as it is to the page at `url`; what came back."""
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=60) as connection:
        connection.sendall(request)
        reply = b""
        while chunk := connection.recv(65536):
            reply += chunk
    return reply


def test_a_request_for_a_foreign_host_is_refused(page):
    port = page.url.rstrip("/").rsplit(":", 1)[1]
    with httpx.Client(timeout=HTTP_TIMEOUT) as client:
        for route in ("", "config", "gradio_api/info", "gradio_api/queue/join"):
            refused = client.request("POST" if route.endswith("join") else "GET", page.url + route, headers={"host": "evil.example"})
            assert (refused.status_code, refused.json()) == (400, {"detail": FOREIGN}), route
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
            assert client.get(page.url + "config", headers={"host": host}).status_code == 200, host
    # As a DNS-rebinding page would send it, and with no Host at all (HTTP/1.0).
    rebinding = raw_request(page.url, f"GET / HTTP/1.1\r\nHost: evil.example:{port}\r\nConnection: close\r\n\r\n".encode())
    assert rebinding.startswith(b"HTTP/1.1 400 ") and FOREIGN.encode() in rebinding
    assert raw_request(page.url, b"GET / HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw_request(page.url, f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()).startswith(b"HTTP/1.1 200 ")
    assert f"refused GET / from 127.0.0.1: {FOREIGN}\n" in page.log.read_text()


def test_a_page_on_every_address_answers_to_its_addresses_only(public_page):
    port = public_page["url"].rstrip("/").rsplit(":", 1)[1]
    with httpx.Client(timeout=HTTP_TIMEOUT) as client:
        for host, status in ((f"10.1.2.3:{port}", 200), (f"[::1]:{port}", 200), ("localhost", 200), ("evil.example", 400)):
            assert client.get(public_page["url"] + "config", headers={"host": host}).status_code == status, host


# --- logins -----------------------------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_repeated_failures_lock_the_address_and_the_name_out_for_longer_each_time():
    clock = Clock()
    throttle = LoginThrottle(failures=5, lockout=60, clock=clock)
    assert [throttle.failed("10.0.0.1", "ann") for _ in range(4)] == [0, 0, 0, 0]
    assert throttle.locked("10.0.0.1", "ann") == 0 and throttle.failures_in_a_row("10.0.0.1", "ann") == 4
    assert throttle.failed("10.0.0.1", "ann") == 60
    # Both are locked out: the address for any name, the name from any address.
    assert throttle.locked("10.0.0.1", "bob") == throttle.locked("10.0.0.2", "ann") == 60
    assert throttle.locked("10.0.0.2", "bob") == 0
    clock.now += 59.5
    assert throttle.locked("10.0.0.1", "ann") == 0.5
    clock.now += 0.5
    assert throttle.locked("10.0.0.1", "ann") == 0
    assert [throttle.failed("10.0.0.1", "ann") for _ in range(5)] == [0, 0, 0, 0, 120]  # twice as long
    clock.now += 120
    throttle.succeeded("ann")  # clears the name, not the address
    assert [throttle.failed("10.0.0.3", "ann") for _ in range(5)][-1] == 60
    assert [throttle.failed("10.0.0.1", "cy") for _ in range(5)][-1] == 240
    # An hour without failures and the lockouts are forgotten.
    clock.now += 3600 + 240
    assert [throttle.failed("10.0.0.1", "dee") for _ in range(5)][-1] == 60


def test_300_guesses_at_one_password_take_14_hours():
    clock = Clock()
    throttle = LoginThrottle(failures=5, lockout=60, clock=clock)
    started = clock.now
    for _ in range(300):
        clock.now += throttle.locked("10.0.0.1", "ann")  # a patient guesser waits out every lockout
        throttle.failed("10.0.0.1", "ann")
    # 60 lockouts, the guesser waits out the first 59: 60 + 120 + 240 + 480 s, then 55 × 900 s (the most).
    assert clock.now - started == 60 + 120 + 240 + 480 + 55 * 900 == 50_400  # 14 hours


def test_the_throttle_remembers_a_bounded_number_of_addresses_and_names():
    throttle = LoginThrottle(clock=Clock(), max_keys=100)
    def address(number: int) -> str:
        return f"10.0.{number // 256}.{number % 256}"

    for number in range(1000):
        throttle.failed(address(number), f"user{number}")
    # The last 100 kept: the addresses and names of the last 50 failures (asking moves nothing out).
    assert all(throttle.failures_in_a_row(address(number), f"user{number}") == 1 for number in range(950, 1000))
    assert throttle.failures_in_a_row(address(949), "user949") == 0  # forgotten


def test_login_settings_come_from_the_environment():
    settings = page_settings_from_env({"QA_LOGIN_FAILURES": "3", "QA_LOGIN_LOCKOUT": "0.5"})
    assert (settings.login_failures, settings.login_lockout) == (3, 0.5)
    assert (PageSettings().login_failures, PageSettings().login_lockout) == (5, 60.0)
    with pytest.raises(ConfigError, match=r"^QA_LOGIN_LOCKOUT must be a number of seconds greater than 0, not '0'$"):
        page_settings_from_env({"QA_LOGIN_LOCKOUT": "0"})
    with pytest.raises(ConfigError, match=r"^QA_LOGIN_FAILURES must be a whole number of 1 or more, not 'many'$"):
        page_settings_from_env({"QA_LOGIN_FAILURES": "many"})


LOCKOUT_SECONDS = 2


def write_logins(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


@pytest.fixture(scope="module")
def login_page(seed_assistant, tmp_path_factory):
    """The chat page with logins from --auth-file, locking out after 5 failures for 2 s (4 s, 8 s, ...)."""
    folder = tmp_path_factory.mktemp("login")
    logins = write_logins(folder / "logins.txt", "# the page's logins\nann:right\n\nbob:also-right\n")
    flags = ("--corpus", str(SEED_CORPUS), "--index", str(seed_assistant.config.index_dir), "--feedback", str(folder / "feedback.jsonl"),
             "--auth-file", str(logins))
    env = {"QA_AUTH": "", "QA_LOGIN_FAILURES": "5", "QA_LOGIN_LOCKOUT": str(LOCKOUT_SECONDS)}
    with running_page(*flags, log=folder / "app.log", env=env) as running:
        yield running


def test_the_passwords_are_not_in_the_process_list(login_page):
    command_line = Path(f"/proc/{login_page.process.pid}/cmdline").read_bytes()
    assert b"--auth-file" in command_line and b"right" not in command_line


def test_logins_come_from_a_private_file(tmp_path):
    logins = write_logins(tmp_path / "logins.txt", "# comment\n\n  ann:pw:with:colons  \nbob:2\n")
    assert read_auth_file(logins) == (("ann", "pw:with:colons"), ("bob", "2"))
    assert page_settings_from_env({"QA_AUTH_FILE": str(logins)}).auth == (("ann", "pw:with:colons"), ("bob", "2"))
    write_logins(logins, "ann:pw\n", mode=0o644)
    with pytest.raises(ConfigError) as error:
        read_auth_file(logins)
    assert str(error.value) == (f"--auth-file {logins} holds passwords but every user of this computer may read or change it "
                                f"(mode 644): run chmod 600 {logins}")
    write_logins(logins, "ann:pw\nbob secret\n")
    with pytest.raises(ConfigError) as error:
        page_settings_from_env({"QA_AUTH_FILE": str(logins)})
    assert str(error.value) == f"QA_AUTH_FILE {logins} line 2 must look like user:password"  # the line itself is not shown
    write_logins(logins, "# nobody\n")
    with pytest.raises(ConfigError, match=r"has no logins: write one user:password a line$"):
        read_auth_file(logins)
    with pytest.raises(ConfigError, match=r"^--auth-file .*missing.txt cannot be read: No such file or directory$"):
        read_auth_file(tmp_path / "missing.txt")


def test_qa_serve_takes_logins_from_a_file_and_no_longer_from_the_command_line(seed_assistant, monkeypatch, tmp_path):
    for name in ("QA_AUTH", "QA_AUTH_FILE"):
        monkeypatch.delenv(name, raising=False)
    launched = {}
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **options: launched.update(options))
    serve = ("serve", "--corpus", str(SEED_CORPUS), "--index", str(seed_assistant.config.index_dir))
    logins = write_logins(tmp_path / "logins.txt", "ann:pw\n")
    result = run_qa(*serve, "--auth-file", str(logins))
    assert result.exit_code == 0, result.output
    assert launched["auth"] == [("ann", "pw")] and isinstance(launched["app_kwargs"]["middleware"][0].kwargs["logins"], LoginThrottle)
    launched.clear()
    result = run_qa(*serve, "--auth", "ann:pw")
    assert (result.exit_code, launched) == (1, {})
    assert result.stderr == (
        "Error: --auth is no longer taken: a password on the command line shows in the process list; put the logins in a file, "
        "one user:password a line (chmod 600), and give --auth-file PATH, or set QA_AUTH\n"
    )
    assert "--auth " not in run_qa("serve", "--help").stdout


def log_in(url: str, user: str, password: str, form: str = "urlencoded") -> httpx.Response:
    if form == "multipart":  # as the browser's login form sends it
        return httpx.post(url + "login", files={"username": (None, user), "password": (None, password)}, timeout=HTTP_TIMEOUT)
    return httpx.post(url + "login", data={"username": user, "password": password}, timeout=HTTP_TIMEOUT)


@pytest.mark.slow
def test_a_lockout_refuses_even_the_right_password_and_lifts(login_page):
    url = login_page.url
    assert [log_in(url, "ann", f"guess{n}", form).status_code for n, form in enumerate(["urlencoded", "multipart"] * 2 + ["urlencoded"])] == [400] * 5
    refused = log_in(url, "ann", "right")
    assert refused.status_code == 429 and refused.headers["retry-after"] == str(LOCKOUT_SECONDS)
    assert refused.json() == {"detail": f"too many failed logins from this address or for this user name: try again in {LOCKOUT_SECONDS} s"}
    assert log_in(url, "bob", "also-right", "multipart").status_code == 429  # the address is locked out too
    time.sleep(LOCKOUT_SECONDS + 0.2)
    assert log_in(url, "ann", "right", "multipart").status_code == 200
    lines = [line for line in login_page.log.read_text().splitlines() if line.startswith("login ")]
    assert lines == [
        *(f"login failed for user 'ann' from 127.0.0.1: wrong user name or password ({n} in a row, 5 lock it out)" for n in range(1, 5)),
        f"login failed for user 'ann' from 127.0.0.1: wrong user name or password (locked out for {LOCKOUT_SECONDS} s)",
        f"login refused for user 'ann' from 127.0.0.1: locked out for {LOCKOUT_SECONDS} s more after failed logins",
        f"login refused for user 'bob' from 127.0.0.1: locked out for {LOCKOUT_SECONDS} s more after failed logins",
    ]


@pytest.mark.slow
def test_300_wrong_passwords_in_a_row_are_nearly_all_refused_unchecked(login_page):
    url = login_page.url
    earlier = len(login_page.log.read_text())
    started = time.monotonic()
    statuses = [log_in(url, "bob", f"guess{n}").status_code for n in range(300)]
    seconds = time.monotonic() - started
    checked = statuses.count(400)
    print(f"300 wrong passwords in {seconds:.1f} s: {checked} checked, {statuses.count(429)} refused unchecked")
    assert set(statuses) == {400, 429} and statuses[:5] == [400] * 5 and statuses[5] == 429
    # Lockouts of 4 s (the address's second), then 8, 16, ...: a handful of passwords is checked in each gap.
    assert checked <= 5 * (1 + seconds / (2 * LOCKOUT_SECONDS))
    log = login_page.log.read_text()[earlier:]  # one line for each of the 300
    assert log.count("login failed for user 'bob'") == checked and log.count("login refused for user 'bob'") == 300 - checked
    assert "Traceback" not in log


# --- uploads ------------------------------------------------------------------------------------------

NO_FILES = "this page accepts no files: uploads are refused"


def test_the_gate_refuses_every_file_route_and_every_multipart_body_but_a_login():
    gate = make_gate(host_names("127.0.0.1"), any_address=False)

    def status(path: str, method: str = "POST", content_type: str | None = None) -> int:
        sent = []
        headers = [(b"host", b"127.0.0.1")] + ([(b"content-type", content_type.encode())] if content_type else [])

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": method, "path": path, "root_path": "", "client": ("10.0.0.1", 1), "headers": headers}
        asyncio.run(gate(scope, receive, send))
        return sent[0]["status"]

    multipart = "multipart/form-data; boundary=x"
    for path in ("/gradio_api/upload", "/upload", "/gradio_api/upload/", "/gradio_api/process_recording", "/process_recording"):
        assert [status(path, method) for method in ("POST", "PUT", "GET")] == [413, 413, 413], path
    assert status("/gradio_api/component_server", content_type=multipart) == 413
    assert status("/gradio_api/queue/join", content_type="Multipart/Form-Data; boundary=x") == 413
    assert status("/login", content_type=multipart) == 200  # the browser's login form
    assert status("/gradio_api/queue/join", content_type="application/json") == 200


NOT_FROM_THE_PAGE = "uploads are taken only from this page itself, not from another site or a program (no matching Origin header)"


def test_uploads_not_from_the_page_itself_are_refused_and_nothing_is_stored(page):
    # A loopback page without a login takes documents from its own page (qa/page/server.py, tests/page/test_uploads.py);
    # another site in the visitor's browser, or a program, may not make it store anything.
    url = page.url
    uploads = page.log.parent / "gradio-files"
    empty = [("files", (f"empty{n}.txt", b"", "text/plain")) for n in range(200)]  # what the issue sent: 200 empty files
    planted = [("files", ("../../planted.txt", b"planted by a visitor", "text/plain"))]
    requests = [
        ("gradio_api/upload", empty, {}, 403, NOT_FROM_THE_PAGE),
        ("gradio_api/upload?upload_id=abc", planted, {"origin": "http://evil.example"}, 403, NOT_FROM_THE_PAGE),
        ("upload", planted, {"origin": "null"}, 403, NOT_FROM_THE_PAGE),
        ("gradio_api/process_recording", planted, {"origin": "null"}, 413, NO_FILES),
        ("gradio_api/component_server", planted, {}, 413, NO_FILES),
        ("gradio_api/queue/join", planted, {}, 413, NO_FILES),
    ]
    with httpx.Client(timeout=HTTP_TIMEOUT) as client:
        for route, files, headers, status, reason in requests:
            response = client.post(url + route, files=files, headers=headers)
            assert (response.status_code, response.json()) == (status, {"detail": reason}), route
        assert client.post(url + "gradio_api/upload", content=b"", headers={"content-type": "text/plain"}).status_code == 403
    stored = [path for path in uploads.rglob("*") if path.is_file()] if uploads.exists() else []
    assert stored == []
    assert f"refused POST /gradio_api/upload from 127.0.0.1: {NOT_FROM_THE_PAGE}\n" in page.log.read_text()


@pytest.mark.slow
def test_with_a_login_a_visitor_who_has_not_logged_in_gets_only_the_login_form(login_page):
    url = login_page.url
    with httpx.Client(timeout=HTTP_TIMEOUT) as client:
        assert client.get(url).status_code == 200  # the login form
        join = {"data": ["问题", 1], "fn_index": 0, "session_hash": "x"}
        for method, route in (("GET", "config"), ("GET", "gradio_api/info"), ("GET", "gradio_api/openapi.json"),
                              ("POST", "gradio_api/queue/join"), ("POST", "gradio_api/call/ask"), ("GET", "gradio_api/file=/etc/hosts")):
            refused = client.request(method, url + route, json=join if method == "POST" else None)
            assert (refused.status_code, refused.json()["detail"]["error"]) == (401, "Not authenticated"), route

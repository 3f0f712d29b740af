"""What the chat page lets in: every HTTP request passes `Gate` before Gradio sees it.

`Gate` is ASGI middleware, given to the FastAPI app that Gradio builds (qa/page/server.py passes it in
`app_kwargs`). It refuses, with one line in the server's log and no traceback:

- a request whose Host header names a host the page does not answer to (400): only the loopback
  names, the address it listens on and the public names it was given (`host_names`); any IP address
  too when it listens beyond loopback. A page of another site that a DNS trick points at this
  computer ("DNS rebinding") names its own host, and is turned away;
- any upload (413): Gradio's file routes (/upload, /process_recording) and any multipart body but
  a login form's, empty files included, so that nothing a visitor sends is stored; except, where the
  page lets documents be added (`max_upload_bytes`, qa/page/server.py: a login, or loopback only), a POST to
  /upload sent by the page itself (its Origin header names the host the request names: no other
  site can make a visitor's browser upload) that states its length and is no larger (411, 403, 413
  otherwise; Gradio then checks the login and each file's size);
- a request body larger than `max_body_bytes` (413), read no further: a 50-million-character question
  costs the server nothing but the refusal;
- a new queued event from a browser tab or API client (a session) that already has
  `max_waiting_per_session` events waiting or running, or from an address with
  `max_waiting_per_address` (429), so that one client cannot fill the queue in front of the others;
- a login from an address, or for a user name, locked out after repeated failures (429, the password
  not even checked; `LoginThrottle`). Each failed login is a log line too.

It knows nothing of Gradio beyond the routes' paths: what is waiting is asked of `waiting`, a
function that lists (session, client address) for every event queued or running.

Longer than most modules: every refusal is decided here, in the order a request meets
them, so that the page's whole admission policy can be read in one file.
"""

import ipaddress
import json
import logging
import math
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import Request

from qa.config import is_address

log = logging.getLogger(__name__)

Scope = dict
Message = dict
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
EVERY_ADDRESS = ("0.0.0.0", "::", "")
SHARE_NAMES = "*.gradio.live"  # the names of a --share link
# Gradio's routes that take files, whatever the method; any other multipart body is refused too.
FILE_ROUTES = ("upload", "process_recording")


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or address to listen on) is this computer only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_names(listen_host: str, public_names: tuple[str, ...] = (), share: bool = False) -> frozenset[str]:
    """The host names a page listening on `listen_host` answers to: the loopback names, `listen_host`
    itself unless it means every address, the `public_names`, and with `share` those of gradio.live."""
    names = set(LOOPBACK_NAMES) | {name.lower() for name in public_names}
    if listen_host not in EVERY_ADDRESS:
        names.add(listen_host.lower().strip("[]"))
    if share:
        names.add(SHARE_NAMES)
    return frozenset(names)


def requested_host(header: str | None) -> str | None:
    """The host a Host header names, in lower case without port or brackets ('[::1]:7860' -> '::1');
    None if there is none or it is malformed."""
    if not header:
        return None
    header = header.strip().lower()
    if header.startswith("["):
        name, bracket, port = header[1:].partition("]")
        if not bracket or (port and not (port[0] == ":" and port[1:].isdigit())):
            return None
    else:
        name, colon, port = header.partition(":")
        if colon and not port.isdigit():
            return None
    return name.rstrip(".") or None


def body_limit(max_question_chars: int) -> int:
    """The largest request body that can carry a question of `max_question_chars` characters: 12 bytes a
    character (a JSON-escaped surrogate pair, the worst case) and 64 KiB for the rest of the request."""
    return 65_536 + 12 * max_question_chars


class LoginThrottle:
    """Failed logins counted per client address and per user name.

    After `failures` failed logins in a row, that address or that name is locked out for `lockout`
    seconds, twice as long at each further lockout, at most MAX_LOCKOUT; a login during a lockout is
    refused whatever its password. A successful login clears the user name's count, not the address's
    (one known password must not buy guesses at other names). What is remembered is forgotten after
    FORGET_AFTER seconds without a failure, and at most `max_keys` addresses and names are kept (the
    oldest go first). With the defaults, 5 and 60 s, 300 guesses at one name take 14 hours.
    """

    MAX_LOCKOUT = 900.0
    FORGET_AFTER = 3600.0

    @dataclass
    class Record:
        failures: int = 0  # since the last lockout
        lockouts: int = 0
        until: float = 0.0  # locked out until then
        last: float = 0.0  # the last failure

    def __init__(self, failures: int = 5, lockout: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 10_000):
        self.failures = failures
        self.lockout = lockout
        self.clock = clock
        self.max_keys = max_keys
        self._records: OrderedDict[tuple[str, str], LoginThrottle.Record] = OrderedDict()

    def locked(self, address: str, user: str) -> float:
        """Seconds until a login from `address` for `user` may be tried again; 0 if it may now."""
        now = self.clock()
        return max(0.0, *(self._record(key, now).until - now for key in self._keys(address, user)))

    def failed(self, address: str, user: str) -> float:
        """Count a failed login; the lockout it starts, in seconds (0 if none)."""
        now = self.clock()
        started = 0.0
        for key in self._keys(address, user):
            record = self._record(key, now)
            record.failures += 1
            record.last = now
            if record.failures >= self.failures:
                record.lockouts += 1
                record.failures = 0
                record.until = now + min(self.lockout * 2 ** (record.lockouts - 1), self.MAX_LOCKOUT)
                started = max(started, record.until - now)
        return started

    def failures_in_a_row(self, address: str, user: str) -> int:
        """The larger count of failures since the last lockout, of the address and of the name."""
        now = self.clock()
        return max(self._record(key, now).failures for key in self._keys(address, user))

    def succeeded(self, user: str) -> None:
        self._records.pop(("user", user), None)

    @staticmethod
    def _keys(address: str, user: str) -> tuple[tuple[str, str], ...]:
        return (("address", address), ("user", user))

    def _record(self, key: tuple[str, str], now: float) -> "LoginThrottle.Record":
        record = self._records.get(key)
        if record is None or (now - record.last > self.FORGET_AFTER and now >= record.until):
            record = self._records[key] = LoginThrottle.Record()
        self._records.move_to_end(key)
        while len(self._records) > self.max_keys:
            self._records.popitem(last=False)
        return record


class Refusal(Exception):
    """A request the gate turns away: the HTTP status and the reason, said to the client and logged."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


class Gate:
    """ASGI middleware that checks every request against the page's limits (see the module's docstring).

    `names` are the host names it answers to (`host_names`), and with `any_address` every IP address
    as well. `waiting` lists (session, client address) for each event queued or running now.
    `logins` throttles the login form; None when the page has no login. `max_upload_bytes`: the
    largest upload (POST /upload) let in, 0 for none.
    """

    def __init__(
        self,
        app: ASGIApp,
        names: frozenset[str],
        any_address: bool,
        waiting: Callable[[], Iterable[tuple[str, str]]],
        max_body_bytes: int,
        max_waiting_per_session: int,
        max_waiting_per_address: int,
        logins: LoginThrottle | None = None,
        max_upload_bytes: int = 0,
    ):
        self.app = app
        self.max_upload_bytes = max_upload_bytes
        self.logins = logins
        self.names = names
        self.any_address = any_address
        self.waiting = waiting
        self.max_body_bytes = max_body_bytes
        self.max_waiting_per_session = max_waiting_per_session
        self.max_waiting_per_address = max_waiting_per_address
        # Joins let in whose event is not yet in the queue: a burst of joins passes the check together
        # before the first reaches the queue, so they count as waiting from the moment they are let in.
        self._joining: Counter = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):  # lifespan
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":  # Gradio serves none; a foreign host gets none either
            if self._host_refused(scope) is not None:
                await send({"type": "websocket.close", "code": 1008})
                return
            await self.app(scope, receive, send)
            return
        try:
            receive, joining = await self._admit(scope, receive)
        except Refusal as refusal:
            log.warning("refused %s %s from %s: %s", scope["method"], _printable(scope["path"]), client_address(scope), refusal.reason)
            await _respond(send, refusal)
            return
        if self.logins is not None and scope["method"] == "POST" and _route(scope) == "login":
            await self._login(scope, receive, send)
            return
        self._joining.update(joining)
        try:
            await self.app(scope, receive, send)
        finally:
            self._joining.subtract(joining)
            for key in joining:
                if self._joining[key] <= 0:
                    del self._joining[key]

    async def _admit(self, scope: Scope, receive: Receive) -> tuple[Receive, tuple]:
        """The `receive` to pass on (the body read here is handed on whole), and for a join to the queue
        the keys it counts under until it is in (session and address); raises Refusal."""
        host = self._host_refused(scope)
        if host is not None:
            raise Refusal(400, f"unknown host name {host!r}: this page answers only to the names it was given "
                               "(--public-name or QA_PUBLIC_NAMES)")
        route = _route(scope)
        length = _header(scope, b"content-length")
        if self.max_upload_bytes and scope["method"] == "POST" and route.removeprefix("gradio_api/") == "upload":
            if not _same_origin(scope):
                raise Refusal(403, "uploads are taken only from this page itself, not from another site or a program "
                                   "(no matching Origin header)")
            if length is None or not length.isdigit():
                raise Refusal(411, "an upload must state its length (Content-Length)")
            if int(length) > self.max_upload_bytes:
                raise Refusal(413, f"upload too large: {int(length) / 1e6:.1f} MB is over this page's limit of "
                                   f"{self.max_upload_bytes / 1e6:.0f} MB at a time; add fewer or smaller files at once")
            return receive, ()  # streamed on to Gradio, which stores it after checking the login
        if route.removeprefix("gradio_api/") in FILE_ROUTES or (
            route != "login" and (_header(scope, b"content-type") or "").lower().startswith("multipart/")
        ):
            raise Refusal(413, "this page accepts no files: uploads are refused")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            raise Refusal(413, self._too_large(length))
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return receive, ()
        body = await _read_body(receive, self.max_body_bytes)
        if body is None:
            raise Refusal(413, self._too_large(None))
        joining = ()
        if scope["method"] == "POST" and _route(scope) in ("gradio_api/queue/join", "queue/join"):
            joining = self._check_waiting(scope, body)
        return _replay(body, receive), joining

    async def _login(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass a login on unless its address or user name is locked out; count how it went."""
        body = (await receive())["body"]  # read whole by _admit
        user = await _form_user(scope, body)
        address = client_address(scope)
        wait = math.ceil(self.logins.locked(address, user))
        if wait:
            refusal = Refusal(429, f"too many failed logins from this address or for this user name: try again in {wait} s",
                              {"Retry-After": str(wait)})
            log.warning("login refused for user %r from %s: locked out for %d s more after failed logins",
                        _printable(user, 64), address, wait)
            await _respond(send, refusal)
            return
        status = 0

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, _replay(body, receive), watched)
        if status == 200:
            self.logins.succeeded(user)
        elif status == 400:  # Gradio's answer to a wrong user name or password
            locked = self.logins.failed(address, user)
            outcome = (f"locked out for {locked:.0f} s" if locked else
                       f"{self.logins.failures_in_a_row(address, user)} in a row, {self.logins.failures} lock it out")
            log.warning("login failed for user %r from %s: wrong user name or password (%s)", _printable(user, 64), address, outcome)

    def _host_refused(self, scope: Scope) -> str | None:
        """The host the request names if the page does not answer to it (the header itself if malformed), else None."""
        header = _header(scope, b"host")
        host = requested_host(header)
        if host is None:
            return _printable(header or "", 100)
        if host in self.names or (SHARE_NAMES in self.names and host.endswith(SHARE_NAMES[1:])):
            return None
        if self.any_address and is_address(host):
            return None
        return _printable(host, 100)

    def _too_large(self, length: str | None) -> str:
        size = f" of {int(length):,} bytes" if length and length.isdigit() else ""
        return (f"request too large: a request{size} is over this page's limit of {self.max_body_bytes:,} bytes "
                "(ask a shorter question)")

    def _check_waiting(self, scope: Scope, body: bytes) -> tuple:
        """The keys a join counts under (("session", id), ("address", ip)); Refusal if either has its most."""
        try:
            session = json.loads(body).get("session_hash")
        except (ValueError, AttributeError):
            return ()  # not a join Gradio would accept either; it says why
        address = client_address(scope)
        sessions, addresses = Counter(), Counter()
        for waiting_session, waiting_address in self.waiting():
            sessions[waiting_session] += 1
            addresses[waiting_address] += 1
        for (kind, key), count in self._joining.items():
            (sessions if kind == "session" else addresses)[key] += count
        if session is not None and sessions[session] >= self.max_waiting_per_session:
            raise Refusal(429, f"too many requests at once: this session already has {sessions[session]} waiting or running "
                               f"(at most {self.max_waiting_per_session}); wait for an answer first", {"Retry-After": "1"})
        if addresses[address] >= self.max_waiting_per_address:
            raise Refusal(429, f"too many requests at once: {addresses[address]} from this address are waiting or running "
                               f"(at most {self.max_waiting_per_address}); wait for an answer first", {"Retry-After": "1"})
        return (("session", session), ("address", address))


async def _form_user(scope: Scope, body: bytes) -> str:
    """The user name a login form carries (as Gradio reads it: stripped), or "" if it has none."""

    async def nothing_more() -> Message:
        return {"type": "http.disconnect"}

    request = Request(scope, _replay(body, nothing_more))
    try:
        async with request.form(max_files=0, max_fields=10) as form:
            user = form.get("username", "")
    except Exception:  # not a form Gradio could read either: it refuses the login itself
        return ""
    return user.strip() if isinstance(user, str) else ""


def client_address(scope: Scope) -> str:
    """The address the request came from (a proxy's, behind one), or "unknown"."""
    client = scope.get("client")
    return client[0] if client else "unknown"


def _route(scope: Scope) -> str:
    """The request's path without the mount point and slashes around it, e.g. 'gradio_api/queue/join'."""
    path = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    return path.strip("/")


def _same_origin(scope: Scope) -> bool:
    """Whether the request's Origin header names the host (and port) its Host header names, as a
    browser's request from the page itself does; False without either."""
    origin, host = _header(scope, b"origin"), _header(scope, b"host")
    if not origin or not host or origin == "null":
        return False
    return urlsplit(origin).netloc.lower() == host.lower()


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1").strip()
    return None


def _printable(text: str, limit: int = 200) -> str:
    """`text` for a log line: control characters escaped, at most `limit` characters."""
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:limit])
    return shown + ("…" if len(text) > limit else "")


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None as soon as it passes `limit` bytes (the rest is left unread)."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives `body` first, then whatever the connection says next (a disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _respond(send: Send, refusal: Refusal) -> None:
    body = json.dumps({"detail": refusal.reason}, ensure_ascii=False).encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
    headers += [(key.lower().encode("latin-1"), value.encode("latin-1")) for key, value in refusal.headers.items()]
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

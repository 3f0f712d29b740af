"""Serve the chat page: set up, then listen, every request passing the page's gate first.

Started by `qa serve` (or `python app.py`, the same command). It listens on 127.0.0.1 unless told
otherwise (--host, QA_HOST or GRADIO_SERVER_NAME). Without a login, anyone who reaches it may ask;
on any address but loopback, rebuilding, feedback and adding or removing documents (qa/documents/uploads.py)
are refused. With a login (--auth-file, QA_AUTH_FILE or QA_AUTH) Gradio asks for it before anything
else. Every request passes the Gate of qa/page/access.py first (host names, sizes, waiting requests,
logins, uploads). The page itself is laid out in qa/page/layout.py and its events are qa/page/events.py;
the API endpoint "/ask" returns what `qa ask --json` prints. Sends no analytics and loads nothing from
the internet.
"""

import errno
import os
import socket
from collections.abc import Callable

import gradio as gr
from starlette.middleware import Middleware

from qa.assistant import Assistant
from qa.compose.composer import Composer
from qa.config import ComposerSettings, Config, PageSettings
from qa.errors import ServeError
from qa.indexing.report import Progress
from qa.page.access import Gate, LoginThrottle, body_limit, host_names, is_loopback
from qa.page.chat import Chat
from qa.page.events import request_address
from qa.page.layout import build_page, static_text
from qa.prepare import Say, install_model, prepare_index

MAX_QUEUED = 256  # events queued on the page in all (Gradio's queue); one more is refused as "queue full"
FILES_AT_ONCE = 4  # an upload request may carry this many files of the largest size the build reads


def upload_limit(max_file_bytes: int) -> int:
    """The largest upload request the page lets in: FILES_AT_ONCE files of `max_file_bytes`, and 1 MB for the form."""
    return FILES_AT_ONCE * max_file_bytes + 1_000_000


def waiting_events(page: gr.Blocks) -> list[tuple[str, str]]:
    """(session, client address) of every event queued or running on `page`, from Gradio's queue.

    Its `event_ids_to_events` holds an event from the moment it joins until it has been processed;
    tests/page/test_events.py fails if a Gradio release changes that.
    """
    events = list(page._queue.event_ids_to_events.values())
    return [(event.session_hash, request_address(event.request)) for event in events]


def check_address(host: str, port: int) -> None:
    """Raise ServeError unless the page can listen on `host`:`port`.

    Checked before the model loads, so that a busy port is said at once rather than after a minute.
    """
    try:
        address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as error:
        raise ServeError(f"cannot listen on {host!r}: {getattr(error, 'strerror', None) or error}; {_HOST_HINT}") from None
    error = _bind_error(address)
    if error is not None:
        raise _address_error(host, port, error)


_HOST_HINT = ("give an address of this computer with --host, QA_HOST or GRADIO_SERVER_NAME "
              "(127.0.0.1: this computer only; 0.0.0.0: the network)")


def _bind_error(address: tuple) -> OSError | None:
    """Why a server could not listen on `address` (an entry of getaddrinfo), or None if it could."""
    family, kind, protocol, _, socket_address = address
    with socket.socket(family, kind, protocol) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server itself binds
        try:
            probe.bind(socket_address)
        except OSError as error:
            return error
    return None


def _address_error(host: str, port: int, error: OSError) -> ServeError:
    if error.errno == errno.EADDRINUSE or "Cannot find empty port" in str(error):
        return ServeError(
            f"port {port} is busy on {host}: another program (perhaps another `qa serve`) listens there; "
            f"choose another port with --port {_free_port_after(host, port)}, or set QA_PORT or GRADIO_SERVER_PORT"
        )
    return ServeError(f"cannot listen on {host} port {port}: {error.strerror or error}; {_HOST_HINT}")


def _free_port_after(host: str, port: int) -> int:
    """The first port after `port` that is free on `host`, to suggest one (`port` + 1 if none of the next 100 is)."""
    for candidate in range(port + 1, min(port + 100, 65536)):
        address = socket.getaddrinfo(host, candidate, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        if _bind_error(address) is None:
            return candidate
    return port + 1


def page_url(host: str, port: int) -> str:
    """Where a browser on this computer finds the page."""
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve(
    config: Config,
    settings: PageSettings,
    say: Say | None = None,
    progress: Progress | None = None,
    show_report: Callable | None = None,
    composing: ComposerSettings | None = None,
) -> None:
    """Set up (the model converted, the index built if it cannot be used), then serve the page until interrupted.

    `say` hears what happens, one line each, `progress` follows a build and `show_report` gets its
    BuildReport; `composing` names the language model that writes answers (None or not enabled: none).
    Raises QAError before serving: ServeError when the address cannot be used.
    """
    say = say or (lambda message: None)
    # Set for the whole process: whatever Gradio starts besides this page (a --share tunnel) sends no analytics either.
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    check_address(settings.host, settings.port)
    assistant = Assistant(config)
    report = prepare_index(assistant, say, progress)
    if report is not None and show_report is not None:
        show_report(report)
    install_model(config, say)  # said, if it happens: loading would otherwise convert the model silently
    assistant.warm_up()  # the first question as quick as the next (torch is loaded only by a rebuild that needs it)
    composer = Composer.for_assistant(composing, assistant) if composing is not None and composing.enabled else None
    if composer is not None:
        say(f"Written answers come from the language model at {composing.llm_url} (QA_LLM_URL); every sentence is checked against the passages it cites.")
    chat = Chat(assistant, auto_rebuild=settings.auto_rebuild, composer=composer)
    if settings.auto_rebuild:
        chat.watch()
    rebuild_allowed = (is_loopback(settings.host) and not settings.share) or settings.auth is not None
    page = build_page(chat, rebuild_allowed, settings)
    gate = Middleware(
        Gate,
        names=host_names(settings.host, settings.public_names, settings.share),
        any_address=not is_loopback(settings.host),
        waiting=lambda: waiting_events(page),
        max_body_bytes=body_limit(config.max_question_chars),
        max_waiting_per_session=settings.max_waiting_per_session,
        max_waiting_per_address=settings.max_waiting_per_address,
        logins=LoginThrottle(settings.login_failures, settings.login_lockout) if settings.auth else None,
        max_upload_bytes=upload_limit(config.max_file_bytes) if rebuild_allowed else 0,
    )
    everywhere = " (listening on all of this computer's addresses)" if settings.host in ("0.0.0.0", "::") else ""
    say(f"The chat page is at {page_url(settings.host, settings.port)}{everywhere}; Ctrl-C stops it.")
    try:
        page.queue(default_concurrency_limit=1, max_size=MAX_QUEUED).launch(
            server_name=settings.host,
            server_port=settings.port,
            auth=list(settings.auth) if settings.auth else None,
            share=settings.share,
            quiet=not settings.share,  # its own lines: the address (said above) and how to share
            theme=gr.themes.Default(
                font=["system-ui", "PingFang SC", "Microsoft YaHei", "Noto Sans CJK SC", "WenQuanYi Micro Hei", "sans-serif"],
                font_mono=["ui-monospace", "Menlo", "Consolas", "monospace"],
            ),
            css=static_text("page.css"),
            ssr_mode=False,
            show_error=False,
            # Files only where documents may be added (the Gate refuses the rest); then no larger than the build reads.
            max_file_size=config.max_file_bytes if rebuild_allowed else 0,
            app_kwargs={"middleware": [gate]},  # every request passes the gate (qa/page/access.py) first
        )
    except OSError as error:  # the port was taken between the check and now
        raise _address_error(settings.host, settings.port, error) from None

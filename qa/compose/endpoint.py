"""Stream a chat completion from an OpenAI-compatible endpoint (vLLM, Ollama, llama.cpp's server, a provider)
through the `openai` client, within one deadline.

The deadline is the reader's: from asking to the last word, at most `llm_timeout` seconds. The response is
read in a worker thread and handed over through a queue, so a server that accepts the request and then
says nothing, or drips a word a minute, costs the reader the timeout and no more: at the deadline the
connection is closed under the worker and the caller gets a ComposeError. Every failure (refused
connection, an HTTP error, a body that is not the API's) is a ComposeError of one line; the key is never
part of a message.
"""

import queue
import threading
import time
from collections.abc import Iterator

from qa.config import ComposerSettings
from qa.errors import ComposeError, short_reason

CONNECT_SECONDS = 5.0  # a server that is not there is known quickly
_END = object()


def _client(settings: ComposerSettings, seconds: float):
    """The `openai` client for the endpoint (imported here: half a second that a page without a composer never pays)."""
    import openai

    timeout = openai.Timeout(seconds, connect=min(CONNECT_SECONDS, seconds))
    # No retries: a retry would spend the reader's deadline on a server that already failed once.
    return openai.OpenAI(base_url=settings.llm_url, api_key=settings.llm_key or "not-needed", timeout=timeout, max_retries=0)


def _failure(error: Exception, settings: ComposerSettings) -> ComposeError:
    """One line that says what went wrong with the endpoint, never quoting the key."""
    import openai

    if isinstance(error, openai.APITimeoutError):
        reason = "did not answer in time"
    elif isinstance(error, openai.APIConnectionError):
        reason = f"cannot be reached ({short_reason(error.__cause__ or error)})"
    elif isinstance(error, openai.AuthenticationError):
        reason = "refused the key (HTTP 401): check QA_LLM_KEY or QA_LLM_KEY_FILE"
    elif isinstance(error, openai.NotFoundError):
        reason = "has no such model or path (HTTP 404): check QA_LLM_URL (it ends in /v1) and QA_LLM_MODEL"
    elif isinstance(error, openai.APIStatusError):
        reason = f"refused the request (HTTP {error.status_code}: {short_reason(error.message)})"
    else:
        reason = f"gave an answer that is not the API's ({short_reason(error)})"
    message = f"the language model at {settings.llm_url} {reason}"
    if settings.llm_key:
        message = message.replace(settings.llm_key, "…")
    return ComposeError(message)


def endpoint_model(settings: ComposerSettings, seconds: float) -> str:
    """The model to ask for: QA_LLM_MODEL, else the endpoint's first model (vLLM and llama.cpp serve one)."""
    if settings.llm_model:
        return settings.llm_model
    try:
        models = [model.id for model in _client(settings, seconds).models.list()]
    except Exception as error:  # the client's own errors and garbage alike: one line for the reader
        raise _failure(error, settings) from None
    if not models:
        raise ComposeError(f"the language model at {settings.llm_url} lists no model: set QA_LLM_MODEL")
    return models[0]


def stream_chat(settings: ComposerSettings, model: str, messages: list[dict], deadline: float) -> Iterator[str]:
    """The answer's text as it comes, piece by piece, until the endpoint ends it; ComposeError if it fails or
    the monotonic clock passes `deadline` first (the connection is then closed)."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise ComposeError(f"the language model at {settings.llm_url} did not answer in time")
    pieces: queue.Queue = queue.Queue()
    opened: list = []  # the response stream, for closing it at the deadline

    def read() -> None:
        try:
            stream = _client(settings, remaining).chat.completions.create(
                model=model, messages=messages, stream=True, max_tokens=settings.llm_max_tokens,
                extra_body=dict(settings.llm_options) or None,
            )
            opened.append(stream)
            for chunk in stream:
                if not getattr(chunk, "choices", None):
                    continue
                text = getattr(chunk.choices[0].delta, "content", None)
                if text:
                    pieces.put(text)
            pieces.put(_END)
        except Exception as error:  # handed to the reader's thread, which raises it as a ComposeError
            pieces.put(error)

    worker = threading.Thread(target=read, name="qa-compose", daemon=True)
    worker.start()
    try:
        while True:
            try:
                piece = pieces.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise ComposeError(f"the language model at {settings.llm_url} did not finish in {settings.llm_timeout:g} s") from None
            if piece is _END:
                return
            if isinstance(piece, Exception):
                raise _failure(piece, settings)
            yield piece
    finally:
        for stream in opened:  # at the deadline, or when the reader stops early: free the connection
            try:
                stream.close()
            except Exception:  # closing a connection that already failed
                pass

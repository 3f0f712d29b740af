"""Errors a user can act on. Every message says what went wrong and what to run to fix it."""

import re

# What a message about a missing, broken or outdated index tells the user to do.
REBUILD_HINT = "run `qa build` to rebuild it"


class QAError(Exception):
    """Base class for errors a user can act on; the message says what to do."""


class ConfigError(QAError):
    """A setting (an environment variable or a flag) has a value it cannot take; the message names the allowed ones."""


class ModelError(QAError):
    """The embedding model cannot be installed or loaded."""


class CorpusError(QAError):
    """The corpus folder or one of its documents cannot be read."""


class DocumentError(CorpusError):
    """One corpus file cannot be read: bad encoding, damaged, encrypted or scanned PDF, broken archive, empty."""


class ImportCasesError(QAError):
    """A case table (the seed's PDF-extracted layout) cannot be parsed."""


class IndexMissingError(QAError):
    """No index has been built in the index folder."""


class IndexCorruptError(QAError):
    """The index files are truncated, damaged or inconsistent with their manifest."""


class IndexMismatchError(QAError):
    """The index was built with settings (model, format) other than the ones asked for."""


class BuildLockedError(QAError):
    """Another build of the same index is running."""


class QuestionError(QAError):
    """The question cannot be asked as given (empty, not text)."""


class FeedbackError(QAError):
    """A thumbs up/down from the chat page cannot be recorded in the feedback log."""


class EvaluationError(QAError):
    """A question set for `qa eval` cannot be read or does not match its format."""


class TuneError(QAError):
    """`qa tune` cannot run as asked: problems in its labelled files, an output folder that exists or is the model in use."""


class TuneInterrupted(TuneError):
    """`qa tune` was stopped; its checkpoint is kept, and the same command goes on from it."""


class CalibrationError(QAError):
    """An index's own verdict cannot be fitted (too few labelled questions) or read (a damaged verdict.json)."""


class ServeError(QAError):
    """The chat page cannot listen where it was told: the port is busy or the address is not this computer's."""


class RayError(QAError):
    """`qa build --ray` cannot run: Ray is not installed, or the cluster cannot be started or reached."""


class ScopeError(QAError):
    """A question is limited to a collection or document the index does not hold; the message names the nearest ones."""


class StoreError(QAError):
    """The store that holds the passages (Milvus) cannot be opened, reached, written or read."""


class IndexWriteError(QAError):
    """A new index cannot be written (disk full, no permission); the previous index, if any, stays in use."""


class UploadError(QAError):
    """A document added to or removed from the corpus from the chat page is refused: its type, size or name."""


class ComposeError(QAError):
    """The language model gave no written answer (down, slow, refused, garbage); the extractive answer stands."""


class PageViewError(QAError):
    """A cited page cannot be shown: the source is not a PDF inside the corpus folder, or has no such page."""


def short_reason(error: Exception) -> str:
    """A library's exception as the reason in one of our messages: its text on one line, at most 120
    characters (its type's name if it has no text)."""
    message = " ".join(str(error).split()) or type(error).__name__
    return message if len(message) <= 120 else message[:117] + "..."


# An absolute path: "/" or "~/" at the start of a word, up to a space, quote or punctuation that
# ends it in our messages ("no index in /srv/qa/index: run …", "cannot read '/srv/x.md'").
_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.~-])~?/[^\s'\"`<>:;,()\[\]{}]+")


def public_message(message: str) -> str:
    """`message` as a visitor of the chat page may see it: absolute server paths cut to their last part.

    Messages name paths for the person running the server (CLI, log); a visitor needs the reason
    and what to do, not where the server keeps its files.
    """
    return _ABSOLUTE_PATH.sub(lambda match: match.group().rstrip("/.").rsplit("/", 1)[-1] or "…", message)

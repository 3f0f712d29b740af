"""Errors a user can act on. Every message says what went wrong and what to run to fix it."""


class QAError(Exception):
    """Base class for errors a user can act on; the message says what to do."""


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

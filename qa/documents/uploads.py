"""Documents added to and removed from the corpus folder from the chat page.

An added file must be of a format the corpus reader reads (qa/documents/readers/), no larger than the
build would read (Config.max_file_bytes), and is stored at the top of the corpus folder under a
safe name: its last path part only, without characters a file system refuses, never hidden. It
never replaces a file of the same name unless the caller says so; it is written beside the
corpus's files under a hidden name first and put in place in one step, so that a build never sees
half a file. A removed document is moved into the hidden folder `.removed/` of the corpus (which
the corpus reader skips), so that a mistaken removal can be undone by moving it back.

Who may do either is the page's decision (qa/page/events.py); this module keeps the corpus folder whole.
"""

import os
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

from qa.documents.corpus import SUPPORTED_SUFFIXES, list_sources, safe_file_name, source_name
from qa.documents.readers import UNSUPPORTED
from qa.errors import UploadError

REMOVED_FOLDER = ".removed"
# What a file of these formats starts with; a file that does not (a web page saved as .pdf) is refused
# before it is stored. Word and Excel and PowerPoint files are zip archives.
_ZIP_FORMATS = (".docx", ".xlsx", ".pptx")


def safe_name(name: str) -> str:
    """The name an uploaded file named `name` is stored under; UploadError if nothing usable is left
    or its format is not one the corpus reader reads.

    Only the last part of a path counts ('../../x.pdf' -> 'x.pdf'); characters and names that file
    systems refuse are dropped (pathvalidate), as are leading dots and spaces (hidden files) and
    Word's lock-file prefix '~$' (the corpus reader skips both).
    """
    cleaned = safe_file_name(name.replace("\\", "/").rsplit("/", 1)[-1])
    suffix = Path(cleaned).suffix.lower()
    if suffix in UNSUPPORTED:
        raise UploadError(f"{_shown(name)}: this format is not read ({UNSUPPORTED[suffix]})")
    if suffix not in SUPPORTED_SUFFIXES or not Path(cleaned).stem.strip(". "):
        raise UploadError(f"{_shown(name)}: not a document the corpus can read; accepted: {', '.join(SUPPORTED_SUFFIXES)}")
    return cleaned


def add_document(corpus_dir: Path, name: str, upload: Path, max_bytes: int, replace: bool = False) -> str:
    """Store the file `upload` in `corpus_dir` as a document named after `name` (see `safe_name`);
    returns its source name. UploadError, with nothing stored, if its type or size is refused, or a
    file of that name exists and `replace` is False.
    """
    stored_as = safe_name(name)
    size = upload.stat().st_size
    if size == 0:
        raise UploadError(f"{stored_as}: the file is empty")
    if size > max_bytes:
        raise UploadError(f"{stored_as}: too large ({size / 1e6:.1f} MB); the limit is {max_bytes / 1e6:.0f} MB a file")
    _check_contents(upload, stored_as)
    target = corpus_dir / stored_as
    if not replace and os.path.lexists(target):
        raise UploadError(f"{stored_as} is already in the corpus: it is replaced only when asked to")
    # Written under a hidden name (skipped by the corpus reader), then put in place in one step.
    handle, temporary = tempfile.mkstemp(prefix=".upload-", dir=corpus_dir)
    try:
        with os.fdopen(handle, "wb") as out, upload.open("rb") as data:
            shutil.copyfileobj(data, out)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)
        if replace:
            os.replace(temporary, target)
        else:
            try:
                os.link(temporary, target)  # fails if the name was taken meanwhile: nothing is overwritten
            except FileExistsError:
                raise UploadError(f"{stored_as} is already in the corpus: it is replaced only when asked to") from None
    finally:
        if os.path.lexists(temporary):
            os.unlink(temporary)
    return stored_as


def remove_document(corpus_dir: Path, source: str) -> Path:
    """Move the document `source` (a name `corpus_documents` lists) into the corpus's `.removed/` folder;
    returns where it now is. UploadError if `source` is not a document of the corpus."""
    if source not in corpus_documents(corpus_dir):
        raise UploadError(f"{_shown(source)} is not a document of the corpus")
    kept = corpus_dir / REMOVED_FOLDER
    kept.mkdir(exist_ok=True)
    stamp, flat = time.strftime("%Y%m%d-%H%M%S"), source.replace("/", "_")
    target, copy = kept / f"{stamp}-{flat}", 1
    while os.path.lexists(target):  # the same name removed twice within a second
        copy += 1
        target = kept / f"{stamp}-{copy}-{flat}"
    os.replace(corpus_dir / source, target)
    return target


def corpus_documents(corpus_dir: Path) -> list[str]:
    """The source names of the corpus's documents, as citations give them."""
    return [source_name(path, corpus_dir) for path in list_sources(corpus_dir)]


def _check_contents(upload: Path, stored_as: str) -> None:
    suffix = Path(stored_as).suffix.lower()
    if suffix == ".pdf":
        with upload.open("rb") as data:
            if b"%PDF-" not in data.read(1024):  # the header may follow a little junk (PDF 1.7, 7.5.2)
                raise UploadError(f"{stored_as}: not a PDF file (it does not start as one)")
    elif suffix in _ZIP_FORMATS and not zipfile.is_zipfile(upload):
        raise UploadError(f"{stored_as}: not a {suffix} file (it is not the zip archive such files are)")


def _shown(name: str, limit: int = 120) -> str:
    """A name a visitor sent, for a message: control characters dropped, at most `limit` characters."""
    shown = "".join(char for char in name if char.isprintable())
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"

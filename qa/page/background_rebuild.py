"""The page's index service: the index panel's facts, corpus changes since the build, and rebuilds.

A rebuild runs in a background thread, one at a time, while questions keep being answered from the
old index (see Assistant.rebuild). Corpus changes are checked cheaply: a folder listing and a stat
per file, reading only files whose size or modification time changed (qa/documents/corpus.py SourceHashes).
"""

import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import replace

from qa.assistant import Assistant
from qa.documents.corpus import SourceHashes
from qa.errors import QAError
from qa.indexing.changes import CorpusChanges, corpus_changes
from qa.indexing.watch import watch_corpus
from qa.page.index_status import IndexStatus, RebuildState

log = logging.getLogger(__name__)


class RebuildJob:
    """Runs `assistant.rebuild` in a background thread, one at a time, and records its progress.

    The assistant keeps answering from the old index meanwhile and switches to the new one in a
    single step when it is complete (see Assistant.rebuild).
    """

    def __init__(self, assistant: Assistant, on_finish: Callable[[], None] | None = None):
        self.assistant = assistant
        self.on_finish = on_finish
        self._state = RebuildState()
        self._lock = threading.Lock()

    def start(self) -> bool:
        """Start a rebuild; False (and nothing started) if one is already running."""
        with self._lock:
            if self._state.running:
                return False
            self._state = RebuildState(running=True, stage="starting", started=time.time())
        threading.Thread(target=self._run, name="qa-rebuild", daemon=True).start()
        return True

    def state(self) -> RebuildState:
        with self._lock:
            return self._state

    def wait(self, timeout: float | None = None) -> RebuildState:
        """Block until no rebuild is running (or `timeout` seconds pass); returns the last state."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.state().running and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.1)
        return self.state()

    def _progress(self, stage: str, done: int, total: int, *more, **details) -> None:
        # Extra arguments are tolerated so a richer build progress does not break the page.
        with self._lock:
            since = self._state.stage_started if stage == self._state.stage else time.time()
            self._state = replace(self._state, stage=stage, done=done, total=total, stage_started=since)

    def _run(self) -> None:
        report, error = None, None
        try:
            report = self.assistant.rebuild(progress=self._progress)
        except QAError as failure:
            error = str(failure)
        except Exception as failure:  # a page must survive any build failure and say so
            log.error("rebuild failed:\n%s", traceback.format_exc())
            error = f"unexpected {type(failure).__name__}: {failure}"
        with self._lock:
            self._state = replace(self._state, running=False, finished=time.time(), report=report, error=error)
        if self.on_finish is not None:
            self.on_finish()


class IndexMonitor:
    """The index panel's facts for every session of the page, and the rebuilds it starts.

    `auto_rebuild`: start a rebuild by itself when the corpus (or the model or chunking) changed
    since the index was built.
    """

    def __init__(self, assistant: Assistant, auto_rebuild: bool = False):
        self.assistant = assistant
        self.auto_rebuild = auto_rebuild
        self.rebuilds = RebuildJob(assistant, on_finish=self._forget_changes)
        self._hashes = SourceHashes(assistant.config.corpus_dir)
        self._changes: tuple[float, CorpusChanges] | None = None
        self._lock = threading.Lock()

    def status(self, max_age: float = 5.0) -> IndexStatus:
        """The index panel's facts; the corpus is checked again at most every `max_age` seconds.

        With `auto_rebuild`, noticing a change starts a rebuild.
        """
        status = IndexStatus(rebuild=self.rebuilds.state())
        try:
            manifest = self.assistant.index.manifest
        except QAError as error:
            status.error = str(error)
        else:
            status.documents = manifest["counts"]["documents"]
            status.passages = manifest["counts"]["passages"]
            status.model = manifest["model"]
            status.built_at = manifest.get("built_at")
            memory = self.assistant.retriever.memory
            status.remembered = len(memory) if memory is not None else 0
        try:
            status.changes = self.changes(max_age)
        except QAError as error:
            status.error = status.error or str(error)
        if self.auto_rebuild and not status.rebuild.running and (status.changes and status.changes.any):
            if status.rebuild.error is None and self.rebuilds.start():
                status.rebuild = self.rebuilds.state()
        return status

    def changes(self, max_age: float = 5.0) -> CorpusChanges:
        """What changed since the build, at most `max_age` seconds old."""
        with self._lock:
            cached = self._changes
            if cached is not None and time.monotonic() - cached[0] < max_age:
                return cached[1]
            # Under the lock: SourceHashes remembers what it read, for one caller at a time.
            changes = corpus_changes(self.assistant.config, self._hashes)
            self._changes = (time.monotonic(), changes)
            return changes

    def watch(self, interval: float = 10.0) -> threading.Thread:
        """Check the corpus in a background thread now and each time it changes and settles, looking every
        `interval` seconds (qa/indexing/watch.py); with auto_rebuild a change starts a rebuild, and the corpus is
        checked again when a rebuild ends, so an edit made during one starts the next."""

        def check():
            try:
                while self.status(max_age=0).rebuild.running:
                    self.rebuilds.wait()
            except Exception:  # the watcher must outlive a bad moment (a file half-written, say)
                log.warning("corpus check failed:\n%s", traceback.format_exc())

        thread = threading.Thread(target=watch_corpus, args=(self.assistant.config.corpus_dir, check, interval),
                                  name="qa-corpus-watch", daemon=True)
        thread.start()
        return thread

    def _forget_changes(self) -> None:
        with self._lock:
            self._changes = None

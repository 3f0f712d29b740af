"""Load test: concurrent gradio_client clients ask the chat page's /ask API while the index is rebuilt.

    .venv/bin/python scripts/load_test.py                      # 20 clients × 50 questions, 3 rebuilds
    .venv/bin/python scripts/load_test.py --clients 5 --questions 10 --rebuilds 1   # a quick look

It starts app.py on a free port of 127.0.0.1 with --auto-rebuild, over a temporary copy of the seed
corpus (the index is built there on start; give --index-from to copy a built index and its
embedding cache instead). While the clients ask, it switches the corpus between two versions: the
seed document, and the same document with a line added before its first heading, which moves every
passage's offsets. The page notices each change and rebuilds in the background.

Every answer is checked: its passages must quote version A at their offsets, or all quote version B,
never some of each (an answer mixing two indexes). It reports failed requests, mixed answers, how
many answers each index version gave, the index switches seen, and latency percentiles (p50, p95,
p99, max, measured by the client, queueing included). Exits 0 only if no request failed, no answer
was mixed, and at least one rebuild finished while the clients were asking. Stops by itself: after
all questions, or after --timeout seconds; the app and the temporary folder are removed either way.
"""

import argparse
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from gradio_client import Client

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))  # for tests.helpers
from tests.helpers import PageDidNotStart, running_page  # noqa: E402

DEV_QUESTIONS = PROJECT.parent / "shared" / "eval" / "dev_questions.tsv"
FALLBACK_QUESTIONS = [
    "民生实事项目是怎么确定的？",
    "小微企业园怎样帮助块状经济转型？",
    "哪些级别的医院之间检查结果互认？",
    "How are old houses saved in the countryside?",
    "What do courtesy landmarks have to do with civic culture?",
    "How do I bake sourdough bread?",
]
PREFIX = "（本汇编用于负载测试：这一行使每个段落的位置后移。）\n\n"


def questions() -> list[str]:
    """The seed dev questions (in scope and out of scope), or a few built-in ones without them."""
    if not DEV_QUESTIONS.exists():
        return FALLBACK_QUESTIONS
    rows = [line.split("\t") for line in DEV_QUESTIONS.read_text(encoding="utf-8").splitlines()]
    return [row[-1] for row in rows if len(row) == 6 and not row[0].startswith("#")] or FALLBACK_QUESTIONS


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile (share in 0..1) of `values`."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


class Run:
    """Shared state of one load test: results of the clients and the index switches seen."""

    def __init__(self, versions: dict[str, dict[str, str]], deadline: float):
        self.versions = versions  # "A"/"B" -> {source: text}
        self.deadline = deadline
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.mixed: list[str] = []
        self.by_version = {"A": 0, "B": 0}
        self.switches: list[tuple[float, str]] = []  # (time, build folder) when index/current changed
        self.asking = [math.inf, 0.0]  # first request sent, last answer received
        self.stop = threading.Event()

    def version_of(self, answer: dict) -> str | None:
        """'A' or 'B' if every passage quotes that version at its offsets, else None."""
        for name, texts in self.versions.items():
            if all(texts.get(p["source"], "")[p["start"] : p["end"]] == p["text"] for p in answer["passages"]):
                return name
        return None

    def record(self, question: str, started: float, answer: dict | None, error: str | None) -> None:
        now = time.monotonic()
        with self.lock:
            self.asking = [min(self.asking[0], started), max(self.asking[1], now)]
            if error is not None:
                self.failures.append(f"{question[:40]}: {error}")
                return
            self.latencies.append(now - started)
            version = self.version_of(answer)
            if version is None:
                self.mixed.append(question)
            else:
                self.by_version[version] += 1


def client_loop(url: str, number: int, count: int, pool: list[str], run: Run) -> None:
    try:
        client = Client(url, verbose=False)
    except Exception as error:  # a client that cannot even connect counts every question as failed
        for i in range(count):
            run.record(pool[(number + i) % len(pool)], time.monotonic(), None, f"connect: {error!r}")
        return
    for i in range(count):
        if time.monotonic() > run.deadline:
            run.record("(not asked)", time.monotonic(), None, "timeout before asking")
            continue
        question = pool[(number * 7 + i) % len(pool)]
        started = time.monotonic()
        try:
            answer = client.predict(question, api_name="/ask")
        except Exception as error:
            run.record(question, started, None, repr(error))
        else:
            run.record(question, started, answer, None)


def watch_current(index: Path, run: Run) -> None:
    """Note every change of index/current (a finished rebuild) until the run stops."""
    seen = None
    while not run.stop.is_set():
        try:
            target = os.readlink(index / "current")
        except OSError:
            target = None
        if target != seen and target is not None:
            with run.lock:
                run.switches.append((time.monotonic(), target))
            seen = target
        time.sleep(0.1)


def change_corpus(document: Path, versions: dict[str, str], rebuilds: int, index: Path, run: Run, every: float) -> None:
    """Switch the document between versions B and A `rebuilds` times, each after the previous rebuild finished."""
    for change in range(rebuilds):
        if run.stop.wait(every):
            return
        with run.lock:
            switches = len(run.switches)
        text = versions["B" if change % 2 == 0 else "A"]
        partial = document.with_name("." + document.name + ".partial")
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, document)  # one step: the page never reads half a file
        print(f"[{time.strftime('%H:%M:%S')}] corpus changed to version {'B' if change % 2 == 0 else 'A'}", flush=True)
        while not run.stop.is_set():  # wait for the page's rebuild to switch the index
            with run.lock:
                if len(run.switches) > switches:
                    break
            time.sleep(0.2)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients [20]")
    parser.add_argument("--questions", type=int, default=50, help="questions per client [50]")
    parser.add_argument("--rebuilds", type=int, default=3, help="corpus changes (each one rebuild) during the load [3]")
    parser.add_argument("--every", type=float, default=15.0, help="seconds between a rebuild and the next corpus change [15]")
    parser.add_argument("--timeout", type=float, default=1800.0, help="stop after this many seconds [1800]")
    parser.add_argument("--index-from", type=Path, help="copy this built index of corpus/ (with its embedding cache) instead of building")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (app log, index) for inspection")
    args = parser.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="qa-load-test-"))
    corpus, index = folder / "corpus", folder / "index"
    shutil.copytree(PROJECT / "corpus", corpus)
    if args.index_from:
        shutil.copytree(args.index_from, index, symlinks=True)
    documents = sorted(p for p in corpus.glob("*.md"))
    document = documents[0]
    version_a = document.read_text(encoding="utf-8")
    texts = {p.name: p.read_text(encoding="utf-8") for p in documents}
    versions = {"A": texts, "B": {**texts, document.name: PREFIX + version_a}}
    pool = questions()

    flags = ("--corpus", str(corpus), "--index", str(index), "--feedback", str(folder / "feedback.jsonl"), "--auto-rebuild")
    started = time.monotonic()
    run = Run({name: version for name, version in versions.items()}, deadline=started + args.timeout)
    threads: list[threading.Thread] = []
    print(f"starting the page (log: {folder / 'app.log'}); the index is built first if needed…", flush=True)
    try:
        with running_page(*flags, log=folder / "app.log", env={"QA_AUTH": ""}, timeout=args.timeout) as served:
            print(f"page up on {served.url} after {time.monotonic() - started:.0f} s; {args.clients} clients × "
                  f"{args.questions} questions, {args.rebuilds} rebuilds", flush=True)
            watcher = threading.Thread(target=watch_current, args=(index, run), daemon=True)
            changer = threading.Thread(target=change_corpus, args=(document, {"A": version_a, "B": PREFIX + version_a},
                                                                   args.rebuilds, index, run, args.every), daemon=True)
            clients = [threading.Thread(target=client_loop, args=(served.url, n, args.questions, pool, run), daemon=True)
                       for n in range(args.clients)]
            watcher.start()
            time.sleep(0.5)  # the index that serves at the start is the first "switch"
            load_started = time.monotonic()
            changer.start()
            for thread in clients:
                thread.start()
            threads = [watcher, changer, *clients]
            for thread in clients:
                thread.join(max(0.0, run.deadline - time.monotonic()) + 60)
            load_seconds = time.monotonic() - load_started
            run.stop.set()
    except PageDidNotStart as error:
        print(error, file=sys.stderr)
        return 1
    finally:
        run.stop.set()
        for thread in threads:
            thread.join(5)

    asked = len(run.latencies) + len(run.failures)
    during = [when for when, _ in run.switches[1:] if run.asking[0] <= when <= run.asking[1]]
    print()
    print(f"requests        {asked} ({len(run.latencies)} answered, {len(run.failures)} failed) in {load_seconds:.0f} s, "
          f"{len(run.latencies) / load_seconds:.1f} answers/s")
    print(f"mixed answers   {len(run.mixed)} (answers whose passages quote two versions of the corpus)")
    print(f"index versions  A {run.by_version['A']} answers, B {run.by_version['B']} answers")
    print(f"rebuilds        {len(run.switches) - 1} finished, {len(during)} of them while clients were asking")
    if run.latencies:
        print("latency (s)     p50 {:.2f}   p95 {:.2f}   p99 {:.2f}   max {:.2f}".format(
            percentile(run.latencies, 0.50), percentile(run.latencies, 0.95),
            percentile(run.latencies, 0.99), max(run.latencies)))
    for failure in run.failures[:10]:
        print(f"failed: {failure}")
    for question in run.mixed[:10]:
        print(f"mixed: {question}")
    if args.keep:
        print(f"kept {folder}")
    else:
        shutil.rmtree(folder, ignore_errors=True)
    ok = not run.failures and not run.mixed and asked == args.clients * args.questions and during
    if not during:
        print("no rebuild finished while the clients were asking: raise --questions or lower --every", file=sys.stderr)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

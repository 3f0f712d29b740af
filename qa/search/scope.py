"""Collections and documents: what a question can be limited to, and the names that say so.

A collection is a folder of the corpus, at any depth (`民法典`, `司法解释/民事`); a document is named by its
source, its path relative to the corpus (`民法典/人格权编.md`). `Library` reads both from an index's
passages (no corpus scan) and resolves the names a question is limited to into a `Scope`
(qa/store/base.py): the passages of the named documents and of every document under the named
collections. A name is taken as, in this order:

    a collection          民法典, 司法解释/民事 (a trailing / and a leading ./ or / are ignored)
    a document's source   民法典/人格权编.md
    a document's name     its file name without the suffix (个体工商户条例(2016-02-06)), without a
                          version date in parentheses at its end (个体工商户条例), its title, or its title
                          without 中华人民共和国 (full-width and half-width forms alike: 刑法修正案(九) is
                          刑法修正案（九）): only where exactly one document has that name

Anything else, a name two documents share included, is a ScopeError that names the nearest collections
and documents (difflib's close matches over every collection, source and document name).

What makes a scope fast is computed once per index: each passage's document number, documents sorted so
that a collection's documents are one run of them. A scope then costs one pass over the passages, and
the scopes asked for most recently are kept.
"""

import difflib
import threading
import unicodedata
from bisect import bisect_left
from collections.abc import Sequence
from pathlib import PurePosixPath

import numpy as np

from qa.documents.structure import fallback_title
from qa.errors import ScopeError
from qa.passages import Passage
from qa.store.base import Scope

# A version date at the end of a file name: 个体工商户条例(2016-02-06).md
_STATE = "中华人民共和国"  # the title of a national law or regulation begins with the state's name
_KEPT_SCOPES = 64
_SUGGESTIONS = 3  # at most, whose names are at least _CLOSE alike (difflib's ratio) and within _MARGIN of the closest
_CLOSE = 0.5
_MARGIN = 0.2


class Library:
    """The collections and documents of an index's passages (row i = passage i), and the scopes of names."""

    def __init__(self, passages: Sequence[Passage]):
        numbers: dict[str, int] = {}
        first_passage: list[Passage] = []
        document_of_row = np.empty(len(passages), dtype=np.int64)
        for row, passage in enumerate(passages):
            number = numbers.get(passage.source)
            if number is None:
                number = numbers[passage.source] = len(numbers)
                first_passage.append(passage)
            document_of_row[row] = number
        self.documents: list[str] = sorted(numbers)
        # Documents renumbered in sorted order: a collection's documents are then one run of numbers.
        order = np.empty(len(numbers), dtype=np.int64)
        order[[numbers[source] for source in self.documents]] = np.arange(len(numbers))
        self._document_of_row = order[document_of_row] if len(passages) else document_of_row
        counts: dict[str, int] = {}
        for source in self.documents:
            for folder in PurePosixPath(source).parents:
                if str(folder) != ".":
                    counts[str(folder)] = counts.get(str(folder), 0) + 1
        self.collections: list[tuple[str, int]] = sorted(counts.items())
        self._collection_sizes = counts
        # The other names of each document (file name, without its date, title), and how many documents share each.
        self._names: dict[str, set[str]] = {}
        for passage in first_passage:
            stem = PurePosixPath(passage.source).stem
            title = passage.title
            names = {stem, fallback_title(passage.source), title, title.removeprefix(_STATE)}
            for name in (names | {unicodedata.normalize("NFKC", name) for name in names}) - {""}:
                self._names.setdefault(name, set()).add(passage.source)
        self._scopes: dict[tuple[str, ...], Scope] = {}  # the most recently asked for last
        self._scopes_lock = threading.Lock()  # the page asks from several threads
        self._spoken: dict[str, list[str]] | None = None  # for suggestions, made at the first unknown name

    def scope(self, within: str | Sequence[str] | None) -> Scope | None:
        """The scope of `within`: None (or no names) for the whole index, or the names of collections and
        documents (one name may be given as a string). ScopeError naming each name that names nothing
        here, with the nearest collections and documents."""
        if within is None:
            return None
        names = [within] if isinstance(within, str) else list(within)
        if not names:
            return None
        resolved, problems = [], []
        for name in names:
            if not isinstance(name, str):
                problems.append(f"{name!r} is not the name of a collection or document (text)")
                continue
            found, problem = self._resolve(name)
            if problem:
                problems.append(problem)
            elif found not in resolved:
                resolved.append(found)
        if problems:
            raise ScopeError("; ".join(problems))
        key = tuple(resolved)
        with self._scopes_lock:
            scope = self._scopes.pop(key, None) or self._make(key)
            self._scopes[key] = scope
            if len(self._scopes) > _KEPT_SCOPES:
                del self._scopes[next(iter(self._scopes))]
        return scope

    def _resolve(self, name: str) -> tuple[str, str]:
        """(the collection or source `name` stands for, "") or ("", what is wrong with it)."""
        cleaned = name.strip().replace("\\", "/").removeprefix("./").strip("/")
        if cleaned in self._collection_sizes or self._is_document(cleaned):
            return cleaned, ""
        named = self._names.get(cleaned) or self._names.get(unicodedata.normalize("NFKC", cleaned), set())
        if len(named) == 1:
            return next(iter(named)), ""
        if len(named) > 1:
            return "", f'"{name}" names {len(named)} documents: {_listed(sorted(named))}; name one by its path'
        nearest = self._nearest(cleaned)
        problem = f'"{name}" is neither a collection nor a document of the corpus'
        if nearest:
            return "", f"{problem}; did you mean: {', '.join(nearest)}?"
        if self._collection_sizes:
            tops = sorted(collection for collection in self._collection_sizes if "/" not in collection)
            return "", f"{problem}; its collections are: {_listed(tops)}"
        return "", f"{problem}; its documents are: {_listed(self.documents)}"

    def _is_document(self, source: str) -> bool:
        at = bisect_left(self.documents, source)
        return at < len(self.documents) and self.documents[at] == source

    def _nearest(self, name: str) -> list[str]:
        """The collections and documents whose names are closest to `name`, each as it is best named."""
        if self._spoken is None:
            self._spoken = self._spoken_names()
        matcher, scored = difflib.SequenceMatcher(), []
        matcher.set_seq2(name)
        for other in self._spoken:  # as difflib.get_close_matches does, keeping the ratios
            matcher.set_seq1(other)
            if matcher.real_quick_ratio() >= _CLOSE and matcher.quick_ratio() >= _CLOSE and matcher.ratio() >= _CLOSE:
                scored.append((matcher.ratio(), other))
        scored.sort(key=lambda pair: -pair[0])  # stable: equal ratios in the order of `_spoken`
        nearest = []
        for ratio, other in scored:
            # Only those about as close as the closest: 医疗/医保 for 医疗/医宝, not also 医疗 and 医疗/医保/门诊.md.
            if ratio >= scored[0][0] - _MARGIN:
                nearest += [spoken for spoken in self._spoken[other] if spoken not in nearest]
        return nearest[:_SUGGESTIONS]

    def _spoken_names(self) -> dict[str, list[str]]:
        """Every name of a collection or document, and how to suggest what it names: a collection by its
        path, a document by its shortest name that names it alone (and no collection), else its source;
        a name several documents share by each of theirs (公司法: 公司法(2018-10-26), 公司法(2023-12-29))."""
        best = {source: source for source in self.documents}
        for other, sources in self._names.items():
            source = next(iter(sources))
            if (len(sources) == 1 and other not in self._collection_sizes and not self._is_document(other)
                    and len(other) < len(best[source])):
                best[source] = other
        spoken = {collection: [collection] for collection in self._collection_sizes}
        for source in self.documents:
            spoken.setdefault(source, [best[source]])
        for other, sources in self._names.items():
            spoken.setdefault(other, [best[source] for source in sorted(sources)])
        return spoken

    def _make(self, names: tuple[str, ...]) -> Scope:
        """The scope of resolved `names` (collections and sources)."""
        chosen = np.zeros(len(self.documents), dtype=bool)
        collections, documents = [], []
        for name in names:
            if name in self._collection_sizes:
                collections.append(name)
                # "/" sorts just before "0": the sources under a folder are those from "name/" to "name0".
                chosen[bisect_left(self.documents, name + "/") : bisect_left(self.documents, name + "0")] = True
            else:
                documents.append(name)
                chosen[bisect_left(self.documents, name)] = True
        mask = chosen[self._document_of_row]
        return Scope(names=names, collections=tuple(collections), documents=tuple(documents),
                     sources=tuple(source for source, kept in zip(self.documents, chosen) if kept), rows=np.flatnonzero(mask), mask=mask)


def _listed(names: list[str], most: int = 10) -> str:
    shown = ", ".join(names[:most])
    return shown if len(names) <= most else f"{shown}, … ({len(names)} in all)"

"""The page's filter: which collections and documents a question searches, and how the page says so.

The filter's choices come from the served index (`Assistant.collections()`, `Assistant.documents()`);
what a visitor chose becomes the names passed to `Assistant.ask(..., within=...)`: collections first,
then documents, each once. The markup here (the line under the filter, the line above a limited
answer, the documents panel's collections) escapes every name, as qa/page/render.py does.
"""

import html
from collections.abc import Iterable, Sequence

SHOWN_NAMES = 3  # a scope of more names is said as its first three and how many more


def scope(collections: Iterable[str] | None, documents: Iterable[str] | None) -> tuple[str, ...]:
    """The names a question is limited to: the chosen collections, then the chosen documents, each once;
    () for the whole corpus."""
    return tuple(dict.fromkeys([*(collections or ()), *(documents or ())]))


def collection_choices(collections: Sequence[tuple[str, int]]) -> list[tuple[str, str]]:
    """The collections as (label, value) choices: ("民法典 (7)", "民法典")."""
    return [(f"{name} ({count:,})", name) for name, count in collections]


def _names(within: Sequence[str], separator: str) -> tuple[str, int]:
    """The first SHOWN_NAMES names joined and escaped, and how many more there are."""
    return separator.join(html.escape(name) for name in within[:SHOWN_NAMES]), max(0, len(within) - SHOWN_NAMES)


def render_filter(within: Sequence[str]) -> str:
    """The line under the question box that says what the next questions search ("" for the whole corpus)."""
    if not within:
        return ""
    zh, more = _names(within, "、")
    en, _ = _names(within, ", ")
    zh_more = f" 等 {len(within)} 项" if more else ""
    en_more = f" and {more} more" if more else ""
    return (
        f'<div class="qa-filter-line" title="{html.escape(chr(10).join(within))}">'
        f"仅在 <b>{zh}</b>{zh_more} 中查找 · Searching only in {en}{en_more}</div>"
    )


def render_scope(within: Sequence[str], lang: str) -> str:
    """The line above an answer that was limited to `within`, in the question's language ("" for none)."""
    if not within:
        return ""
    title = html.escape("\n".join(within))
    if lang == "zh":
        names, more = _names(within, "、")
        said = f"仅在 {names}{f' 等 {len(within)} 项' if more else ''} 中查找"
    else:
        names, more = _names(within, ", ")
        said = f"Searched only in {names}{f' and {more} more' if more else ''}"
    return f'<div class="qa-scope" title="{title}">{said}</div>'


def render_collections(collections: Sequence[tuple[str, int]], documents: Sequence[str]) -> str:
    """The documents panel's summary: how many documents, and each collection with its count (a nested
    collection under its parent, by its last name)."""
    top = sum(1 for source in documents if "/" not in source)
    head = f"{len(documents):,} 文档 documents"
    if collections:
        head += f" · {len(collections):,} 合集 collections"
    rows = []
    for name, count in collections:
        depth = name.count("/")
        shown = html.escape(name.rsplit("/", 1)[-1])
        rows.append(
            f'<li style="margin-left:{depth * 14}px" title="{html.escape(name)}">{shown} '
            f'<span class="qa-count">{count:,}</span></li>'
        )
    if collections and top:
        rows.append(f'<li>（不在合集中 · not in a collection） <span class="qa-count">{top:,}</span></li>')
    listed = f'<ul class="qa-collection-list">{"".join(rows)}</ul>' if rows else ""
    return f'<div class="qa-collections"><div>{head}</div>{listed}</div>'

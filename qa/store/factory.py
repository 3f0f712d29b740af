"""The stores by name: the one place that turns a setting or a manifest into a store (qa/store/base.py)."""

from qa.config import Config
from qa.errors import REBUILD_HINT, IndexCorruptError
from qa.store.base import Store
from qa.store.local import LocalStore
from qa.store.milvus import MilvusStore

# The names are those `Config.store` accepts (qa.config.STORES) and the manifest's "store" records.
BACKENDS: dict[str, type[Store]] = {"local": LocalStore, "milvus": MilvusStore}


def store_for(config: Config) -> Store:
    """The store a build with `config` writes to (`config.store`, one of the names Config checks it for)."""
    return BACKENDS[config.store].from_config(config)


def store_of(manifest: dict) -> Store:
    """The store that holds the passages of the build `manifest` describes; IndexCorruptError if it names none."""
    facts = manifest.get("store") or {}
    if not isinstance(facts.get("kind"), str) or facts["kind"] not in BACKENDS:
        raise IndexCorruptError(f"the manifest names no store the index can be read from ({facts!r}); {REBUILD_HINT}")
    return BACKENDS[facts["kind"]].from_manifest(facts)

"""The embedding cache: vectors back exactly as stored, by name; its size; a cache of format 1 converted."""

import hashlib
import sqlite3

import numpy as np

from qa.embeddings.cache import EmbeddingCache, text_key

E5, SECOND = "e5", "second encoder"
TEXTS = [f"第{n}条 乡村振兴青年创业基金每个项目最高资助十万元。" for n in range(2000)]


def unit_vectors(count: int, dimension: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, dimension)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_vectors_come_back_as_stored_under_their_own_name(tmp_path):
    path = tmp_path / "cache.sqlite"
    e5, second = unit_vectors(3, 384), unit_vectors(3, 512, seed=1)
    with EmbeddingCache(path, E5, float16=[SECOND]) as cache:
        cache.put(TEXTS[:3], e5)
        cache.put(TEXTS[:3], second, model=SECOND)
    with EmbeddingCache(path, E5, float16=[SECOND]) as cache:
        found = cache.get([TEXTS[2], TEXTS[0], "不在缓存里"])
        assert np.array_equal(found[0], e5[2]) and np.array_equal(found[1], e5[0]) and found[2] is None
        assert found[0].dtype == np.float32
        # float16 for the second encoder: rounded as second.npy rounds it, given back as float32
        assert np.array_equal(cache.get(TEXTS[:1], model=SECOND)[0], second[0].astype(np.float16).astype(np.float32))
        assert cache.get(TEXTS[:1], model="another model") == [None]  # never another name's vectors
        assert cache.problem is None


def test_a_vector_stored_again_replaces_the_old_one(tmp_path):
    first, second = unit_vectors(2, 8), unit_vectors(2, 8, seed=1)
    with EmbeddingCache(tmp_path / "cache.sqlite", E5) as cache:
        cache.put(TEXTS[:2], first)
        cache.put(TEXTS[1:2], second[1:])
        found = cache.get(TEXTS[:2])
    assert np.array_equal(found[0], first[0]) and np.array_equal(found[1], second[1])


def test_the_cache_is_about_the_size_of_its_vectors(tmp_path):
    """2,000 passages' e5 vectors (float32, 1,536 bytes) and second encoder vectors (float16, 1,024 bytes):
    the file holds them in little more room than theirs (format 1 took 13 KB a passage for 3.5 KB)."""
    path = tmp_path / "cache.sqlite"
    with EmbeddingCache(path, E5, float16=[SECOND]) as cache:
        for start in range(0, len(TEXTS), 512):  # as a build stores them: a chunk at a time
            cache.put(TEXTS[start : start + 512], unit_vectors(len(TEXTS[start : start + 512]), 384, start))
            cache.put(TEXTS[start : start + 512], unit_vectors(len(TEXTS[start : start + 512]), 512, start), model=SECOND)
        cache.get(TEXTS)  # a rebuild marks every row used: no growth
        cache.get(TEXTS, model=SECOND)
        cache.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    held = len(TEXTS) * (384 * 4 + 512 * 2)
    assert path.stat().st_size < 1.25 * held


def test_unused_rows_are_forgotten_after_two_builds(tmp_path):
    path = tmp_path / "cache.sqlite"
    with EmbeddingCache(path, E5) as cache:  # build 1 embeds three texts
        cache.put(TEXTS[:3], unit_vectors(3, 8))
    with EmbeddingCache(path, E5) as cache:  # build 2 uses two of them
        cache.get(TEXTS[:2])
        assert cache.forget_unused() == 0  # TEXTS[2] was used by the previous build: kept (undoing an edit is free)
    with EmbeddingCache(path, E5) as cache:  # build 3 uses one
        cache.get(TEXTS[:1])
        assert cache.forget_unused() == 1  # TEXTS[2], used by neither build 2 nor build 3
        assert [vector is not None for vector in cache.get(TEXTS[:3])] == [True, True, False]


# The schema of format 1 (qa 0.1.0 before the cache was compacted), and its keys: the whole sha256.
FORMAT_1 = """
CREATE TABLE vectors (model TEXT NOT NULL, key BLOB NOT NULL, used INTEGER NOT NULL, vector BLOB NOT NULL,
                      PRIMARY KEY (model, key)) WITHOUT ROWID;
CREATE TABLE tokens (tokenizer TEXT NOT NULL, key BLOB NOT NULL, used INTEGER NOT NULL, tokens TEXT NOT NULL,
                     PRIMARY KEY (tokenizer, key)) WITHOUT ROWID;
CREATE TABLE generations (model TEXT PRIMARY KEY, generation INTEGER NOT NULL);
"""


def write_format_1(path, vectors: dict[str, np.ndarray]) -> None:
    connection = sqlite3.connect(path)
    connection.executescript(FORMAT_1)
    for model, rows in vectors.items():
        connection.executemany(
            "INSERT INTO vectors VALUES (?, ?, 4, ?)",
            [(model, hashlib.sha256(text.encode()).digest(), vector.tobytes()) for text, vector in zip(TEXTS, rows)],
        )
    connection.execute("INSERT INTO tokens VALUES ('words', ?, 4, 'w:乡村\x1f振兴')", (hashlib.sha256(b"x").digest(),))
    connection.execute("INSERT INTO generations VALUES ('*', 4)")
    connection.commit()
    connection.close()


def test_a_cache_of_format_1_is_converted_with_its_vectors(tmp_path):
    path = tmp_path / "cache.sqlite"
    e5, second = unit_vectors(300, 384), unit_vectors(300, 512, seed=1)
    write_format_1(path, {E5: e5, SECOND: second})
    before = path.stat().st_size

    progress = []
    with EmbeddingCache(path, E5, float16=[SECOND], progress=lambda done, total: progress.append((done, total))) as cache:
        assert cache.problem is None and cache.generation == 5  # the builds counted before go on
        assert progress == [(0, 600), (600, 600)]  # one chunk of 4,096 rows at most
        assert cache.converted.startswith(f"embedding cache {path} converted to a compact format: ")
        found = cache.get(TEXTS[:300])
        assert all(np.array_equal(vector, row) for vector, row in zip(found, e5))
        assert np.array_equal(np.stack(cache.get(TEXTS[:300], model=SECOND)), second.astype(np.float16).astype(np.float32))
        tables = {row[0] for row in cache.connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"names", "vectors", "used", "generations"}  # the keyword tokens are gone
    assert path.stat().st_size < before / 2
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone() == (2,)


def test_a_cache_of_a_newer_format_is_left_alone(tmp_path):
    path = tmp_path / "cache.sqlite"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE vectors (anything)")
        connection.execute("PRAGMA user_version = 3")
    with EmbeddingCache(path, E5) as cache:
        assert cache.problem == (
            f"embedding cache {path} cannot be used (it is format 3, written by a newer version of qa); "
            "every passage is embedded"
        )
        cache.put(TEXTS[:1], unit_vectors(1, 8))  # in memory, for this build
        assert cache.get(TEXTS[:1])[0] is not None
    with sqlite3.connect(path) as connection:  # for the newer qa that wrote it
        assert connection.execute("PRAGMA user_version").fetchone() == (3,)
        assert connection.execute("SELECT name FROM sqlite_master").fetchall() == [("vectors",)]


def test_keys_are_16_bytes_of_the_texts_sha256():
    assert text_key("乡村") == hashlib.sha256("乡村".encode()).digest()[:16]

"""The response cache: JSON bytes only, no eviction, damage reported and refetched, and a copied
cache that cannot run code or read outside itself (notes/packaging-and-validation.md §3)."""
import builtins
import pickle
import sqlite3

import diskcache

import k2vv

EXCHANGE = {"v": 1, "status": 200, "body": {"choices": [{"index": 0, "message": {"content": "hi"},
                                                          "finish_reason": "stop"}]}, "attempts": 1}


class _Planted:
    def __reduce__(self):
        return (exec, ("import builtins; builtins.K2VV_UNPICKLED = 1",))


def test_values_are_canonical_json_bytes_readable_with_sqlite_alone(tmp_path):
    with k2vv.open_cache(tmp_path / "c") as cache:
        cache.store_many([("a" * 64, k2vv.canonical_json(EXCHANGE))])
        assert cache.get("a" * 64) == EXCHANGE
    db = sqlite3.connect(tmp_path / "c" / "cache.db")
    key, raw, mode, value = db.execute("SELECT key, raw, mode, value FROM Cache").fetchone()
    assert (key, raw, mode) == ("a" * 64, 1, 1)
    assert bytes(value) == k2vv.canonical_json(EXCHANGE)


def test_the_cache_never_evicts_even_if_created_with_diskcache_defaults(tmp_path):
    diskcache.Cache(str(tmp_path / "c"), size_limit=100_000).close()  # someone's LRU-limited cache
    big = dict(EXCHANGE, pad="x" * 40_000)  # file-backed values (>= 32 KiB)
    with k2vv.open_cache(tmp_path / "c") as cache:
        for i in range(60):
            cache.store_many([(f"{i:064x}", k2vv.canonical_json(big))])
        assert cache._cache.eviction_policy == "none"
        assert all(cache.get(f"{i:064x}") == big for i in range(60))


def test_damaged_and_foreign_entries_are_reported_not_trusted(tmp_path):
    with k2vv.open_cache(tmp_path / "c") as cache:
        cache.store_many([("1" * 64, k2vv.canonical_json(EXCHANGE))])
        cache.store_many([("2" * 64, k2vv.canonical_json(EXCHANGE))])
        cache.store_many([("3" * 64, k2vv.canonical_json(EXCHANGE))])
        cache.store_many([("4" * 64, k2vv.canonical_json(EXCHANGE))])
        cache.store_many([("5" * 64, b"{not json")])
        cache.store_many([("6" * 64, k2vv.canonical_json(dict(EXCHANGE, v=99)))])
    db = sqlite3.connect(tmp_path / "c" / "cache.db")
    db.execute("UPDATE Cache SET mode = 4, value = ? WHERE key = ?", (pickle.dumps(_Planted()), "1" * 64))
    db.execute("UPDATE Cache SET mode = 2, filename = '../../../../etc/hostname' WHERE key = ?", ("2" * 64,))
    db.execute("UPDATE Cache SET raw = 0, key = ? WHERE key = ?", (pickle.dumps(_Planted()), "3" * 64))
    db.commit()
    db.close()
    with k2vv.open_cache(tmp_path / "c") as cache:
        assert cache.get("1" * 64) is None
        assert cache.get("2" * 64) is None
        assert cache.get("4" * 64) == EXCHANGE
        assert cache.get("5" * 64) is None and cache.get("6" * 64) is None
        assert len(cache.damaged) == 4
        cache.store_many([("2" * 64, k2vv.canonical_json(EXCHANGE))])  # refetched answers replace damage without touching /etc
        assert cache.get("2" * 64) == EXCHANGE
    assert not hasattr(builtins, "K2VV_UNPICKLED")


def test_score_needs_an_existing_cache(tmp_path, capsys):
    assert k2vv.main(["score", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--cache",
                      str(tmp_path / "nothing")]) == 2
    assert "no k2vv cache here" in capsys.readouterr().err


def test_a_foreign_cache_db_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "c").mkdir()
    with k2vv.open_cache(tmp_path / "c") as cache:
        cache.store_many([("a" * 64, k2vv.canonical_json(EXCHANGE))])
    db = sqlite3.connect(tmp_path / "c" / "cache.db")
    db.execute("INSERT INTO Settings VALUES ('disk_evil', 1)")
    db.commit()
    db.close()
    assert k2vv.main(["score", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--cache", str(tmp_path / "c")]) == 2
    assert "not a usable k2vv cache" in capsys.readouterr().err
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "cache.db").write_bytes(b"this is not sqlite" * 100)
    assert k2vv.main(["score", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--cache", str(tmp_path / "d")]) == 2

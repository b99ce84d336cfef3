"""k2vv_cache — the content-addressed store of raw exchanges, safe to open whoever made it.

diskcache with eviction off, str keys and bytes values only: a cache copied from someone else never
unpickles anything, never reads outside its directory or follows a link out of it, and is read in
place (SQLite read-only) when k2vv may not write there. What the bytes mean is the caller's
`decode` (DESIGN §6). Imports nothing from k2vv.
"""
from __future__ import annotations

import contextlib
import os
import stat
import time
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import Callable


class CacheDamage(Exception):
    """A cached value that cannot be used (not raw bytes, outside the cache, not decodable, another
    version): reported and refetched."""


class CacheUnusable(Exception):
    """A directory k2vv cannot use as its cache (none there, not one, not writable): one line."""


_DISK_CLASS = None


def _json_bytes_disk():
    """A diskcache `Disk` that stores str keys and bytes values raw and refuses anything else: a
    cache copied from someone else must never unpickle or read outside its directory (notes §3d)."""
    global _DISK_CLASS
    if _DISK_CLASS is None:
        import diskcache

        class JSONBytesDisk(diskcache.Disk):
            def put(self, key):
                if not isinstance(key, str):
                    raise TypeError("k2vv cache keys are str")
                return super().put(key)

            def get(self, key, raw):
                if not raw:
                    raise CacheDamage("a cache key is not stored raw (refusing to unpickle it)")
                return super().get(key, raw)

            def store(self, value, read, key=None):
                if not isinstance(value, bytes):
                    raise TypeError("k2vv cache values are bytes of JSON")
                return super().store(value, read) if key is None else super().store(value, read, key)

            def _inside(self, filename):
                root = os.path.realpath(self._directory)
                full = os.path.realpath(os.path.join(root, filename))
                if os.path.commonpath([root, full]) != root:
                    raise CacheDamage("a cache value file points outside the cache directory")
                return full

            def fetch(self, mode, filename, value, read):
                if read:
                    raise CacheDamage("k2vv reads cache values whole")
                return cache_value(Path(self._directory), mode, filename, value)

            def remove(self, file_path):
                try:
                    self._inside(file_path)
                except CacheDamage:
                    return None  # replacing a planted row must not delete a file outside the cache
                return super().remove(file_path)

        _DISK_CLASS = JSONBytesDisk
    return _DISK_CLASS


MAX_CACHE_VALUE = 64 * 2 ** 20  # a stored exchange: 4 x the default --max-answer-bytes (JSON-escaped, headers)


def cache_value(directory: Path, mode, filename, value) -> bytes | None:
    """The bytes of one cache row: raw bytes in the row, or a value file read safely — a regular
    file inside the cache directory, opened without following a link, no larger than
    MAX_CACHE_VALUE (a borrowed cache may hold links to /etc/passwd or /dev/zero, or a FIFO).
    None when its file went away; CacheDamage for anything else."""
    if mode == 1:  # diskcache MODE_RAW
        return bytes(value) if isinstance(value, (bytes, memoryview)) else None
    if mode != 2 or not isinstance(filename, str):  # MODE_BINARY: a file; anything else may unpickle
        raise CacheDamage(f"a cache value has mode {mode} (refusing anything but raw bytes)")
    root = os.path.realpath(directory)
    full = os.path.join(root, filename)
    if os.path.isabs(filename) or os.path.commonpath([root, os.path.realpath(full)]) != root:
        raise CacheDamage("a cache value file points outside the cache directory")
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(full, flags)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise CacheDamage(f"a cache value file cannot be opened safely ({err.strerror or err})") from None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise CacheDamage("a cache value file is not a regular file")
        if info.st_size > MAX_CACHE_VALUE:
            raise CacheDamage(f"a cache value file is larger than {MAX_CACHE_VALUE >> 20} MiB")
        return fh.read(MAX_CACHE_VALUE + 1)[:MAX_CACHE_VALUE]


class ResponseCache:
    """The content-addressed store of raw exchanges: diskcache with eviction off (its default 1 GB
    LRU limit would silently delete answers), bytes in, `decode`d values out (`decode` raises
    ValueError or CacheDamage for a value it will not use), damage reported not raised."""

    def __init__(self, directory: Path, readonly: bool, decode: Callable[[bytes], dict]):
        import diskcache
        import sqlite3
        self.directory = Path(directory)
        self.decode = decode
        self.damaged: list[str] = []
        settings = dict(disk=_json_bytes_disk(), eviction_policy="none", size_limit=2 ** 62,
                        cull_limit=0, statistics=False, sqlite_mmap_size=0, sqlite_cache_size=1024)
        if readonly and not (self.directory / "cache.db").exists():
            raise CacheUnusable(f"{self.directory}: no k2vv cache here (expected {self.directory}/cache.db);"
                            " pass --cache DIR or set K2VV_CACHE")
        self._cache = self._ro = None
        try:
            self._cache = diskcache.Cache(str(self.directory), **settings)
        except (sqlite3.DatabaseError, TypeError, ValueError, OSError) as err:
            writable_only = isinstance(err, (sqlite3.OperationalError, OSError))  # e.g. a read-only directory
            if not readonly or not writable_only:
                what = "cannot open the cache for writing" if writable_only else "not a usable k2vv cache"
                raise CacheUnusable(f"{self.directory}: {what} "
                                f"({getattr(err, 'strerror', None) or str(err)[:120]})") from None
            self._ro_pid = None  # opened lazily, once per process (fold workers fork)
            self._rows(["0" * 64])  # a cache.db that is not a cache says so now

    def _execute(self):
        """The SQL `execute` of the cache's connection: diskcache's own, or, for a cache k2vv may
        not write (a read-only directory, someone else's copy), SQLite opened read-only in place,
        never copied (a copy follows whatever links the directory holds). `immutable` when even the
        WAL index cannot be created; then answers still in an uncheckpointed cache.db-wal are not
        seen, and k2vv says so."""
        import sqlite3
        if self._cache is not None:
            return self._cache._sql  # diskcache's own connection
        if self._ro is None or self._ro_pid != os.getpid():
            db = self.directory / "cache.db"
            uri = "file:" + urllib.parse.quote(str(db.resolve()))
            try:
                self._ro = sqlite3.connect(uri + "?mode=ro", uri=True, check_same_thread=False)
                self._ro.execute("SELECT 1 FROM Cache LIMIT 1").fetchall()
            except sqlite3.OperationalError:
                self._ro = sqlite3.connect(uri + "?immutable=1", uri=True, check_same_thread=False)
                if (self.directory / "cache.db-wal").exists():
                    self.damaged.append("cache.db-wal: answers not yet merged into cache.db cannot be read "
                                        "from a read-only directory (open it once where it is writable)")
            self._ro_pid = os.getpid()
        return self._ro.execute

    @staticmethod
    def _select(execute, keys: list | None, limit: int = 0) -> list:
        """(key, mode, filename, value) of the rows for `keys` (None: the first `limit` rows), as
        diskcache's own `get` selects them."""
        import sqlite3
        where = f"key IN ({','.join('?' * len(keys))}) AND " if keys is not None else ""
        try:
            return execute(f"SELECT key, mode, filename, value FROM Cache WHERE {where}raw = 1 AND "
                           f"(expire_time IS NULL OR expire_time > ?){f' LIMIT {int(limit)}' if limit else ''}",
                           (*(keys or ()), time.time())).fetchall()
        except sqlite3.DatabaseError as err:
            raise CacheUnusable(f"not a usable k2vv cache ({str(err)[:120]})") from None

    @property
    def path(self) -> Path:
        return self.directory

    def get(self, key: str) -> dict | None:
        return next(self.get_each([key]))

    def get_each(self, keys: list, batch: int = 500):
        """The exchange (or None) of each key, in order, read with one SELECT per `batch` keys
        (one diskcache call each was a third of `score` at 100,000 answers, BENCHMARKS.md): raw
        bytes in the row, or a regular file inside the cache read without following links."""
        for start in range(0, len(keys), batch):
            chunk = keys[start:start + batch]
            rows = self._rows(chunk)
            found = {}
            for key, mode, filename, value in rows:
                try:
                    found[key] = cache_value(self.directory, mode, filename, value)
                except CacheDamage as err:
                    self.damaged.append(f"{key[:12]}: {err}")
            for key in chunk:
                yield self._decode(key, found.get(key))

    def _rows(self, keys: list | None, limit: int = 0) -> list:
        return self._select(self._execute(), keys, limit)

    def empty(self) -> bool:
        return not self._rows(None, 1)

    def endpoints(self, limit: int = 20_000) -> Counter:
        """{(url, model): answers} over the first `limit` entries: what the cache holds answers
        for, to say so when a job's settings find none (entries from before 0.1.0 name none)."""
        found = Counter()
        for key, mode, filename, value in self._rows(None, limit):
            with contextlib.suppress(CacheDamage):
                exchange = self._decode(key, cache_value(self.directory, mode, filename, value)) or {}
                where = exchange.get("endpoint") if isinstance(exchange.get("endpoint"), dict) else {}
                found[(str(where.get("url", "?")), str(where.get("model", "?")))] += 1
        return found

    def _decode(self, key: str, raw) -> dict | None:
        if raw is None:
            return None
        try:
            return self.decode(raw)
        except (ValueError, CacheDamage, UnicodeDecodeError) as err:
            self.damaged.append(f"{key[:12]}: {str(err)[:80]}")
            return None

    def store_many(self, answers: list) -> None:
        """(key, value bytes) pairs stored in one transaction: one fsync for a batch of answers."""
        with self._cache.transact():
            for key, value in answers:
                self._cache.set(key, value)

    def disconnect(self) -> None:
        """Close the SQLite connection, keeping the cache usable (it reconnects on next use): what
        must happen before a fork, so no connection or lock state crosses it."""
        if self._cache is not None:
            self._cache.close()
        elif self._ro is not None:
            self._ro.close()
            self._ro = None

    def __contains__(self, key):
        return next(self.get_each([key])) is not None if self._cache is None else key in self._cache

    def close(self):
        self.disconnect()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

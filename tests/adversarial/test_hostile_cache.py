"""Caches someone else handed us, damaged on purpose: a value file swapped for a symlink out of the cache,
for /dev/zero, for a FIFO, for a device node, or for JSON nested 100,000 deep; and a read-only cache.
Contract: `score` never reads outside the cache directory, never reads without bound, never blocks on a
special file, reports the damage on stderr (the case is unanswered), never prints a traceback, and reads
a read-only cache in place (no copy). Each variant runs in the cache's own directory (as root) and as
another user who cannot write it (`setpriv` to nobody; without root, the cache is made read-only)."""
import json
import os
import resource
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

import k2vv
import k2vv_sim

from .hostile import describe, run_k2vv, write_jsonl

ROOT_USER = os.geteuid() == 0
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
MODEL = "kimi-k2"
BIG = 1_500_000  # characters of the one big answer's arguments: its value is a file of its own (> 32 KiB)
GUARD = {resource.RLIMIT_FSIZE: 10 << 20, resource.RLIMIT_AS: 2 << 30}  # a bug fails the test, not the disk
NO_BASELINE = k2vv.EXIT_INCONCLUSIVE


def forced_line(name, parameters, text):
    return {"messages": [{"role": "user", "content": text}],
            "tools": [{"type": "function", "function": {"name": name, "parameters": parameters}}],
            "tool_choice": {"type": "function", "function": {"name": name}}, "parallel_tool_calls": False}


def text_of_length(n):
    return {"type": "object", "properties": {"text": {"type": "string", "minLength": n}}, "required": ["text"]}


class SharedCache:
    """A cache built by a real `run` against k2vv_sim's reference vendor, in a directory under /tmp that
    another user can reach (pytest's tmp_path is private to root): two small answers, `medium` answers
    of ~28 KB stored inside cache.db, and one answer of ~1.5 MB stored in a value file of its own."""

    def __init__(self, medium: int = 0):
        self.dir = Path(tempfile.mkdtemp(prefix="k2vv-adversarial-"))
        try:
            self._build(medium)
        except BaseException:
            self.remove()
            raise

    def _build(self, medium: int) -> None:
        os.chmod(self.dir, 0o755)
        for name in ("home", "tmp", "work"):
            (self.dir / name).mkdir(mode=0o777)
            os.chmod(self.dir / name, 0o777)
        self.cache, self.cases = self.dir / "cache", self.dir / "cases.jsonl"
        rows = [forced_line("small", text_of_length(3), f"small {i}") for i in range(2)]
        rows += [forced_line("medium", text_of_length(28_000), f"medium {i}") for i in range(medium)]
        rows += [forced_line("big", text_of_length(BIG), "big")]
        write_jsonl(self.cases, rows)
        os.chmod(self.cases, 0o644)
        self.total = len(rows)
        with k2vv_sim.SimVendor("reference") as v:
            self.url = v.url
            code = k2vv.main(["run", str(self.cases), "--base-url", v.url, "--model", MODEL, "--cache", str(self.cache),
                              "--out", str(self.dir / "ran"), "--quiet", "--retries", "0"])
            assert code == NO_BASELINE and v.count == self.total
        summary = json.loads((self.dir / "ran" / "summary.json").read_text())
        assert summary["success_count"] == self.total
        self.values = [p for p in self.cache.rglob("*") if p.is_file() and not p.name.startswith("cache.db")]
        assert len(self.values) == 1, f"expected one value file (the big answer), found {self.values}"
        self.value = self.values[0]

    def plant(self, make) -> None:
        """Replace the value file with what `make(path)` creates there."""
        self.value.unlink()
        make(self.value)

    def make_read_only(self) -> None:
        for path in [self.cache, *self.cache.rglob("*")]:
            if path.is_symlink():
                continue
            os.chmod(path, 0o555 if path.is_dir() else 0o444)

    def score(self, mode: str, timeout: float, limits=GUARD, out: str = "scored"):
        """`score` with the run's job flags, `mode` 'in_place' (this user) or 'read_only' (nobody, or
        this user on a cache it cannot write). TMPDIR, HOME and the output are the shared dir's own."""
        prefix = []
        if mode == "read_only":
            if ROOT_USER and not shutil.which("setpriv"):
                pytest.skip("running as another user needs setpriv (util-linux)")
            self.make_read_only()
            if ROOT_USER:
                prefix = NOBODY
        env = dict(os.environ, HOME=str(self.dir / "home"), TMPDIR=str(self.dir / "tmp"),
                   PYTHONDONTWRITEBYTECODE="1")
        args = ["score", str(self.cases), "--base-url", self.url, "--model", MODEL, "--cache", str(self.cache),
                "--out", str(self.dir / "work" / out)]
        return run_k2vv(args, self.dir / "work", timeout, env=env, prefix=prefix, limits=limits)

    def summary(self, out: str = "scored") -> dict:
        return json.loads((self.dir / "work" / out / "summary.json").read_text())

    def big_files(self, limit: int = 10 << 20) -> list:
        found = []
        for folder, _, files in os.walk(self.dir):
            for name in files:
                st = os.lstat(os.path.join(folder, name))
                if stat.S_ISREG(st.st_mode) and st.st_size > limit:
                    found.append((os.path.join(folder, name), st.st_size))
        return found

    def remove(self) -> None:
        for folder, dirs, _ in os.walk(self.dir):
            for name in dirs:
                path = os.path.join(folder, name)
                if not os.path.islink(path):
                    os.chmod(path, 0o755)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def shared():
    cache = SharedCache()
    try:
        yield cache
    finally:
        cache.remove()


MODES = ["in_place", "read_only"]


def assert_damage_reported(shared: SharedCache, result):
    assert not result.timed_out, describe(result)
    assert "Traceback" not in result.stderr, describe(result)
    assert result.returncode == NO_BASELINE, describe(result)
    assert "damage" in result.stderr, describe(result)
    responses = shared.summary()["classes"]["responses"]
    assert responses["unanswered"] == 1, responses  # the planted entry, not read
    assert shared.summary()["success_count"] == shared.total - 1


@pytest.mark.parametrize("mode", MODES)
def test_a_value_file_linked_outside_the_cache_is_not_read(shared, mode):
    outside = shared.dir / "outside.json"  # a valid exchange: read, it would answer the case
    outside.write_bytes(shared.value.read_bytes())
    os.chmod(outside, 0o644)
    shared.plant(lambda path: path.symlink_to(outside))
    result = shared.score(mode, timeout=60)
    assert_damage_reported(shared, result)


@pytest.mark.parametrize("mode", MODES)
def test_a_value_file_linked_to_dev_zero_is_damage_not_an_endless_read(shared, mode):
    shared.plant(lambda path: path.symlink_to("/dev/zero"))
    result = shared.score(mode, timeout=60)
    assert result.elapsed < 20, describe(result)
    assert not shared.big_files(), shared.big_files()
    assert_damage_reported(shared, result)


@pytest.mark.skipif(not ROOT_USER, reason="mknod of a character device needs root")
@pytest.mark.parametrize("mode", MODES)
def test_a_device_node_in_the_cache_is_damage_not_an_endless_read(shared, mode):
    """A character device (1, 5: what /dev/zero is) inside the cache directory: no symlink to resolve."""
    try:
        shared.plant(lambda path: os.mknod(path, stat.S_IFCHR | 0o444, os.makedev(1, 5)))
        with open(shared.value, "rb") as fh:
            assert fh.read(4) == b"\0\0\0\0"
    except OSError as err:
        pytest.skip(f"cannot make or open a device node here ({err})")
    result = shared.score(mode, timeout=60)
    assert result.elapsed < 20, describe(result)
    assert not shared.big_files(), shared.big_files()
    assert_damage_reported(shared, result)


@pytest.mark.parametrize("mode", MODES)
def test_a_fifo_in_place_of_a_value_file_does_not_block(shared, mode):
    shared.plant(lambda path: os.mkfifo(path, 0o644))
    result = shared.score(mode, timeout=30)
    assert_damage_reported(shared, result)


@pytest.mark.parametrize("mode", MODES)
def test_a_value_file_nested_100000_deep_is_damage(shared, mode):
    shared.plant(lambda path: path.write_bytes(b"[" * 100_000 + b"]" * 100_000))
    result = shared.score(mode, timeout=60)
    assert_damage_reported(shared, result)


def test_a_read_only_cache_is_read_in_place_not_copied():
    """As a user who cannot write the cache: the summary of the run, byte for byte, and no copy. The
    cache holds ~1.3 MB of answers inside the database (cache.db, or its WAL as the run left it) and a
    1.5 MB value file, and the child may write no file over 1 MiB (RLIMIT_FSIZE), so a copy of either
    kills it; TMPDIR is checked for a copy left behind too."""
    shared = SharedCache(medium=45)
    try:
        database = [p.stat().st_size for p in shared.cache.glob("cache.db*")]  # the answers: in the db or its WAL
        assert max(database) > 1 << 20, database
        result = shared.score("read_only", timeout=60, limits={resource.RLIMIT_FSIZE: 1 << 20})
        copied = "File too large" in result.stderr  # EFBIG: a write past RLIMIT_FSIZE (Python ignores SIGXFSZ)
        assert not copied, "score tried to write a file over 1 MiB (a copy of the cache): " + describe(result)
        assert not result.timed_out and result.returncode == NO_BASELINE, describe(result)
        assert "Traceback" not in result.stderr and "damage" not in result.stderr, describe(result)
        ran = (shared.dir / "ran" / "summary.json").read_bytes()
        assert (shared.dir / "work" / "scored" / "summary.json").read_bytes() == ran
        left = [p for p in (shared.dir / "tmp").rglob("cache.db*")]
        assert not left, left
    finally:
        shared.remove()


def test_a_results_file_nested_100000_deep_does_not_stop_the_report(tmp_path, capsys):
    """A run directory someone handed over, its results.jsonl damaged: the report skips the line it
    cannot read (json.loads raised RecursionError there: exit 70), as every other reader does."""
    with k2vv_sim.SimVendor("sloppy") as vendor:
        assert k2vv.main(["run", "--base-url", vendor.url, "--model", MODEL, "--limit", "20", "--quiet",
                          "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "run")]) in (1, 3)
    with open(tmp_path / "run" / "results.jsonl", "a", encoding="utf-8") as fh:
        fh.write("[" * 100_000 + "\n")
    assert k2vv.main(["report", str(tmp_path / "run"), "--out", str(tmp_path / "report")]) == k2vv.EXIT_PASS
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert [row["provider"] for row in report["rows"]] == [f"127.0.0.1_{vendor.port}"]

"""The floor: what any scorer must at least do, and nothing more.

    .venv/bin/python bench/floor_score.py TESTSET CACHE_DIR

json.loads every test-set line and every stored answer (the same diskcache rows `k2vv score`
reads, in one SELECT; mode 2 values from their files), streaming: nothing is kept, so neither
memory nor the garbage collector's work grows with N. No keys, no pairing, no validation.
"""
import json
import os
import sqlite3
import sys


def main(testset: str, cache_dir: str) -> tuple[int, int]:
    lines = 0
    with open(testset, "rb") as fh:
        for text in fh:
            json.loads(text)
            lines += 1
    db = sqlite3.connect(f"file:{os.path.join(cache_dir, 'cache.db')}?mode=ro", uri=True)
    answers = 0
    for mode, filename, value in db.execute("SELECT mode, filename, value FROM Cache"):
        if mode == 2:
            with open(os.path.join(cache_dir, filename), "rb") as fh:
                value = fh.read()
        json.loads(value)
        answers += 1
    return lines, answers


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:3])))

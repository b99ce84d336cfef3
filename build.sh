#!/usr/bin/env bash
# Build dist/k2vv.pyz, byte for byte reproducibly: same commit + same lock files = same sha256.
#
#   ./build.sh          build dist/k2vv.pyz, print its sha256 and size
#   ./build.sh demo     set up .venv from the same pinned wheels, then run `k2vv demo` (no key, no internet)
#   ./build.sh test     set up .venv (+ test tools), build dist/k2vv.pyz, run every test
#   ./build.sh wheel    build dist/k2vv-VERSION-py3-none-any.whl (what `pip install .` installs)
#
# Recipe (measured in shared/notes/packaging-and-validation.md §1): hash-pinned pure wheels
# (requirements.lock) are unzipped by hand into build/site, never pip-installed, because pip
# writes the build paths into RECORD/direct_url.json; then `shiv --site-packages --reproducible`
# with SOURCE_DATE_EPOCH = last commit time, and umask 022 because shiv copies file modes.
# Finally __main__.py is replaced (same ZipInfo, so still deterministic) by one that imports
# straight from the zip when shiv cannot extract to $SHIV_ROOT or ~/.shiv (§1c).
#
# Environment: PYTHON (builder, default python3, needs >= 3.10 for click),
# K2VV_WHEELHOUSE (wheel cache, default ./wheelhouse; the network is used only for wheels
# missing from it), SOURCE_DATE_EPOCH (default: last commit time, else a constant).
# Exit 75 when wheels are missing and cannot be downloaded.
set -euo pipefail

cd "$(dirname "$0")"
ROOT=$PWD
PYTHON=${PYTHON:-python3}
WHEELHOUSE=${K2VV_WHEELHOUSE:-$ROOT/wheelhouse}
VENV=build/venv
SITE=build/site
OUT=dist/k2vv.pyz
SHEBANG='/usr/bin/env python3'
FALLBACK_EPOCH=1767225600   # 2026-01-01T00:00:00Z, for a tree without git history

die() { echo "build.sh: $*" >&2; exit 1; }

umask 022
export PYTHONHASHSEED=0 TZ=UTC LC_ALL=C PYTHONDONTWRITEBYTECODE=1
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null) || SOURCE_DATE_EPOCH=$FALLBACK_EPOCH
fi
export SOURCE_DATE_EPOCH
if [ -n "$(git status --porcelain --untracked-files=all -- k2vv.py k2vv_cache.py k2vv_http.py k2vv_judge.py k2vv_providers.py k2vv_report.py k2vv_sim.py k2vv_stats.py k2vv_wire.py fixtures schemas 2>/dev/null)" ]; then
    echo "build.sh: note: uncommitted changes in k2vv*.py/fixtures/schemas; this pyz is not the commit's" >&2
fi

# ---- 1. build venv with shiv (cached; rebuilt when the builder or the build lock changes) ----
stamp="$("$PYTHON" -c 'import sys; print(sys.version)' | tr -d '\n') $(sha256sum requirements-build.lock | cut -c1-64)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.k2vv-stamp" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    pip_install=("$VENV/bin/python" -m pip install -q --no-deps --require-hashes -r requirements-build.lock)
    if ! "${pip_install[@]}" --no-index --find-links "$WHEELHOUSE" 2>/dev/null; then
        "$VENV/bin/python" -m pip download -q -d "$WHEELHOUSE" --no-deps --require-hashes \
            --only-binary=:all: -r requirements-build.lock || { echo "build.sh: cannot get build wheels" >&2; exit 75; }
        "${pip_install[@]}" --no-index --find-links "$WHEELHOUSE"
    fi
    echo "$stamp" > "$VENV/.k2vv-stamp"
fi
VPY=$VENV/bin/python

# ---- 2. runtime wheels: verify sha256 + py3-none-any, unzip into build/site ----
stage_wheels() {  # $1 = "check" (exit 3 if any wheel is missing) or "stage"
    "$VPY" - "$1" "$WHEELHOUSE" requirements.lock "$SITE" <<'EOF'
import hashlib, os, re, sys, zipfile
mode, wheelhouse, lock, site = sys.argv[1:5]
pins = []  # (name, version, {sha256})
for m in re.finditer(r"^([A-Za-z0-9._-]+)==(\S+)((?:\s*\\?\s*--hash=sha256:[0-9a-f]{64})+)",
                     open(lock).read(), re.M):
    pins.append((m.group(1), m.group(2), set(re.findall(r"sha256:([0-9a-f]{64})", m.group(3)))))
if not pins:
    sys.exit("build.sh: no hash-pinned lines in " + lock)
wheels, missing = [], []
files = sorted(os.listdir(wheelhouse)) if os.path.isdir(wheelhouse) else []
for name, version, hashes in pins:
    prefix = "%s-%s-" % (re.sub(r"[-_.]+", "_", name).lower(), version)
    found = [f for f in files if f.lower().startswith(prefix) and f.endswith(".whl")
             and hashlib.sha256(open(os.path.join(wheelhouse, f), "rb").read()).hexdigest() in hashes]
    if not found:
        missing.append("%s==%s" % (name, version))
    elif not found[0].endswith("-py3-none-any.whl"):
        sys.exit("build.sh: %s is not a pure py3-none-any wheel" % found[0])
    else:
        wheels.append(found[0])
if missing:
    if mode == "check":
        sys.exit(3)
    sys.exit("build.sh: no wheel with a locked sha256 in %s for: %s" % (wheelhouse, " ".join(missing)))
if mode == "stage":
    for w in wheels:
        with zipfile.ZipFile(os.path.join(wheelhouse, w)) as z:
            for n in z.namelist():
                if n.startswith("/") or ".." in n.split("/") or re.search(r"\.(so|pyd)$|\.so\.", n):
                    sys.exit("build.sh: refusing %s in %s" % (n, w))
            z.extractall(site)
        print("  " + w)
EOF
}
set +e; stage_wheels check; rc=$?; set -e
if [ "$rc" = 3 ]; then
    echo "build.sh: downloading missing wheels into $WHEELHOUSE" >&2
    "$VPY" -m pip download -q -d "$WHEELHOUSE" --no-deps --require-hashes --only-binary=:all: \
        --platform any --implementation py --abi none --python-version 3.10 -r requirements.lock \
        || { echo "build.sh: cannot download the wheels in requirements.lock" >&2; exit 75; }
elif [ "$rc" != 0 ]; then
    exit "$rc"
fi

# ---- .venv for `demo` and `test`: the same hash-checked pure wheels, installed from the wheelhouse ----
setup_venv() {  # $1 = runtime | test
    local stamp
    stamp="$("$PYTHON" -c 'import sys; print(sys.version)' | tr -d '\n') $(sha256sum requirements.lock | cut -c1-16)"
    if [ ! -x .venv/bin/python ] || [ "$(cat .venv/.k2vv-stamp 2>/dev/null)" != "$stamp" ]; then
        echo "build.sh: setting up .venv from requirements.lock" >&2
        rm -rf .venv
        "$PYTHON" -m venv .venv
        .venv/bin/python -m pip install -q --disable-pip-version-check --no-index --find-links "$WHEELHOUSE" \
            --require-hashes -r requirements.lock
        echo "$stamp" > .venv/.k2vv-stamp
    fi
    if [ "$1" = test ] && ! cmp -s requirements-test.txt .venv/.k2vv-test-stamp; then
        echo "build.sh: installing the test tools (requirements-test.txt)" >&2
        .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-test.txt
        cp requirements-test.txt .venv/.k2vv-test-stamp
    fi
    # `k2vv` on PATH once .venv is activated: a launcher for this checkout's k2vv.py (what
    # `pip install -e .` would write, without fetching a build backend).
    printf '#!%s/.venv/bin/python\nimport sys\nsys.path.insert(0, %s)\nimport k2vv\nsys.exit(k2vv.main())\n' \
        "$ROOT" "'$ROOT'" > .venv/bin/k2vv
    chmod 755 .venv/bin/k2vv
}
case "${1:-}" in
    demo) shift; setup_venv runtime; exec .venv/bin/k2vv demo "$@" ;;
    test) setup_venv test ;;
    wheel)  # dist/k2vv-VERSION-py3-none-any.whl (+ sdist); pip fetches the build backend (hatchling)
        rm -f dist/k2vv-*.whl dist/k2vv-*.tar.gz
        "$VPY" -m pip wheel -q --disable-pip-version-check --no-deps -w dist . \
            || { echo "build.sh: cannot build the wheel (is PyPI reachable for hatchling?)" >&2; exit 75; }
        ls dist/k2vv-*.whl
        exit 0 ;;
esac

rm -rf "$SITE" && mkdir -p "$SITE" dist
stage_wheels stage

# k2vv's modules and its data, next to each other (k2vv reads the data relative to its own module).
# Copied as plain files so their modes come from the umask, not from the checkout.
"$VPY" - "$SITE" <<'EOF'
import os, shutil, sys
site = sys.argv[1]
for module in ("k2vv.py", "k2vv_cache.py", "k2vv_http.py", "k2vv_judge.py", "k2vv_providers.py", "k2vv_report.py", "k2vv_sim.py", "k2vv_stats.py", "k2vv_wire.py"):
    shutil.copyfile(module, os.path.join(site, module))
for top in ("fixtures", "schemas"):
    for d, dirs, files in os.walk(top):
        dirs[:] = sorted(x for x in dirs if not x.startswith(".") and x != "__pycache__")
        for f in sorted(files):
            if not f.startswith(".") and not f.endswith(".pyc"):
                os.makedirs(os.path.join(site, d), exist_ok=True)
                shutil.copyfile(os.path.join(d, f), os.path.join(site, d, f))
EOF
find "$SITE" -name __pycache__ -prune -exec rm -rf {} +
compiled=$(find "$SITE" \( -name '*.so' -o -name '*.so.*' -o -name '*.pyd' -o -name '*.dylib' -o -name '*.dll' \))
[ -z "$compiled" ] || die "compiled files in $SITE: $compiled"

# ---- 3. shiv, then patch __main__.py ----
rm -f "$OUT.tmp"
"$VPY" -m shiv --site-packages "$SITE" --reproducible -e k2vv:main -p "$SHEBANG" -o "$OUT.tmp"

"$VPY" - "$OUT.tmp" <<'EOF'
# Rewrite the zip with every ZipInfo (name, date, mode, order) kept; only __main__.py's bytes
# change. Deterministic: same input zip -> same output bytes.
import os, sys, zipfile
MAIN = '''\
# -*- coding: utf-8 -*-
# k2vv.pyz entry point: shiv's __main__.py, replaced by build.sh. Must parse on Python 3.6+.
# shiv extracts site-packages/ to $SHIV_ROOT or ~/.shiv and dies when it cannot (HOME unset,
# missing or read-only, uid without a passwd entry). Then import straight from this zip
# instead: slower start, nothing written. Never fall back to a shared directory like /tmp,
# where anyone could plant code under the public build id. A Python older than 3.10 also
# goes to the zip, so it is refused (one line, exit 2) before shiv extracts 3 MB for nothing.
import os
import sys


def _can_extract():
    if os.environ.get("SHIV_ROOT"):
        return True
    try:
        from pathlib import Path
        root = Path("~/.shiv").expanduser()  # what shiv uses; RuntimeError if no home
        if not root.is_absolute():
            return False
        root.mkdir(parents=True, exist_ok=True)
        ours = root.stat().st_uid == os.geteuid()  # not code someone else could write
        return ours and os.access(str(root), os.W_OK | os.X_OK)
    except (OSError, RuntimeError, KeyError, AttributeError):
        return False


if sys.version_info >= (3, 10) and _can_extract():
    import _bootstrap
    _bootstrap.bootstrap()
else:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "site-packages"))
    if sys.version_info < (3, 10):  # k2vv's own guard prints one line and exits 2
        try:
            import k2vv
        except Exception:  # e.g. SyntaxError from newer syntax in k2vv.py
            pass
        sys.stderr.write("k2vv: needs Python 3.10 or newer, found %d.%d (%s); install one beside it (RHEL/Rocky 9: dnf install python3.11; Ubuntu: the deadsnakes PPA; anywhere: pyenv install 3.11) and run python3.11 k2vv.pyz\\n"
                         % (sys.version_info[0], sys.version_info[1], sys.executable))
        sys.exit(2)
    import k2vv
    sys.exit(k2vv.main())
'''
path = sys.argv[1]
raw = open(path, "rb").read()
shebang = raw[:raw.index(b"\n") + 1]
with zipfile.ZipFile(path) as zin:
    entries = [(info, zin.read(info)) for info in zin.infolist()]
names = [info.filename for info, _ in entries]
if names.count("__main__.py") != 1 or entries[-1][0].filename != "__main__.py":
    sys.exit("build.sh: unexpected shiv layout: __main__.py is not the last entry")
compile(MAIN, "__main__.py", "exec")
with open(path + ".new", "wb") as f:
    f.write(shebang)
    with zipfile.ZipFile(f, "w") as zout:
        for info, data in entries:
            zout.writestr(info, MAIN.encode() if info.filename == "__main__.py" else data)
os.chmod(path + ".new", 0o755)
os.replace(path + ".new", path)
EOF

# Belt and braces: list the finished archive with unzip (it warns about the shebang prefix).
if command -v unzip >/dev/null; then
    listing=$(unzip -l "$OUT.tmp" 2>/dev/null || true)
    echo "$listing" | grep -q 'site-packages/k2vv.py' || die "unzip -l cannot list $OUT.tmp"
    ! echo "$listing" | grep -E '\.(so|pyd)$|\.so\.' || die "compiled files in $OUT.tmp"
fi
mv -f "$OUT.tmp" "$OUT"

sha=$(sha256sum "$OUT" | cut -c1-64)
size=$(stat -c %s "$OUT")
echo "$OUT  sha256 $sha  $size bytes  (SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH)"

if [ "${1:-}" = test ]; then
    shift
    exec .venv/bin/python -m pytest -q tests "$@"
fi

#!/usr/bin/env bash
# Smoke-test a built k2vv.pyz on every Python found, in the situations where shiv alone breaks.
#
#   .ci/smoke-pyz.sh [dist/k2vv.pyz]
#
# For each of 3.10-3.13 (pyenv's /root/.pyenv/versions/3.1x*, else pythonX.Y on PATH; missing ones
# are skipped with a note): --help and --version with a writable HOME (shiv extracts), with
# SHIV_ROOT, as a non-root user whose HOME is read-only, with HOME unset, as a uid without a
# passwd entry, and as ./k2vv.pyz through its shebang; `lint` on the bundled test set, and a `run`
# against the pyz's own simulated vendor then `score` of that cache as another user.
# 3.6-3.9 must refuse with one line and exit 2, extracting nothing.
# Run as root (as CI does) for the other-user cases: a read-only directory does not stop root.
# Exits 1 if any check failed.
set -uo pipefail

PYZ=${1:-dist/k2vv.pyz}
[ -f "$PYZ" ] || { echo "smoke-pyz: $PYZ not found; run ./build.sh first" >&2; exit 1; }
USER_NAME=k2vv-smoke   # created if missing (system user, home /nonexistent)
NOPASSWD_UID=4242

fails=0
pass() { echo "  ok    $*"; }
fail() { echo "  FAIL  $*"; fails=$((fails + 1)); }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
cp "$PYZ" "$work/k2vv.pyz" && chmod 755 "$work/k2vv.pyz"
mkdir -m 555 "$work/rohome"              # read-only HOME (root-owned, so no one else can write)
cd "$work"

find_python() {  # $1 = X.Y -> path or nothing
    local p
    for p in /root/.pyenv/versions/"$1".*/bin/python; do
        [ -x "$p" ] && { echo "$p"; return; }
    done
    command -v "python$1" 2>/dev/null || true
}

is_root=0; [ "$(id -u)" = 0 ] && is_root=1
if [ $is_root = 1 ] && ! id "$USER_NAME" >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$USER_NAME" \
        || { echo "smoke-pyz: useradd $USER_NAME failed" >&2; exit 1; }
fi

# as_other USER|UID PY CMD... : run CMD as another user with a clean environment (set by the caller
# via `env -i` inside CMD). If that user cannot reach the interpreter (pyenv under /root is 0700),
# grant CAP_DAC_READ_SEARCH only: it lets it read and traverse, never write, so HOME stays read-only.
as_other() {
    local who=$1 py=$2; shift 2
    local ids=(--reuid "$who" --regid "$who")
    if [ "$who" = "$NOPASSWD_UID" ]; then ids+=(--clear-groups); else ids+=(--init-groups); fi
    local caps=()
    if ! setpriv "${ids[@]}" env "$py" -c pass >/dev/null 2>&1; then  # via env: setpriv's own exec can pass
        caps=(--inh-caps +dac_read_search --ambient-caps +dac_read_search)
    fi
    setpriv "${ids[@]}" "${caps[@]}" "$@"
}

# check NAME WANT_RC CMD... : run CMD, compare its exit code, keep its output in $out.
check() {
    local name=$1 want=$2; shift 2
    out=$("$@" 2>&1); local rc=$?
    if [ "$rc" = "$want" ]; then pass "$name"; return 0; fi
    fail "$name: exit $rc, expected $want"; echo "$out" | sed 's/^/        | /' | tail -15
    return 1
}

# A PATH holding only a python3 that is the interpreter under test, for `#!/usr/bin/env python3`
# (nothing else: env would silently fall through to /usr/bin/python3 if the shim were unusable).
shim_path() {  # $1 = python -> prints a PATH
    local d
    d=$(mktemp -d -p "$work" bin.XXXXXX) && chmod 755 "$d" && ln -s "$1" "$d/python3" && echo "$d"
}

BASE_PATH=/usr/bin:/bin
for v in 3.10 3.11 3.12 3.13; do
    py=$(find_python "$v")
    if [ -z "$py" ]; then echo "Python $v: not found, skipped"; continue; fi
    echo "Python $v: $py"
    home=$(mktemp -d -p "$work")

    check "--help, writable HOME (extracts)" 0 env -i PATH=$BASE_PATH HOME="$home" "$py" k2vv.pyz --help
    help=$out
    if ls -d "$home"/.shiv/k2vv.pyz_* >/dev/null 2>&1; then pass "extracted into \$HOME/.shiv"
    else fail "nothing extracted into $home/.shiv"; fi
    check "--version, writable HOME" 0 env -i PATH=$BASE_PATH HOME="$home" "$py" k2vv.pyz --version \
        && { echo "$out" | grep -q '^k2vv ' || fail "--version printed: $out"; }
    check "--version, SHIV_ROOT set" 0 env -i PATH=$BASE_PATH HOME=/nonexistent SHIV_ROOT="$home/root" \
        "$py" k2vv.pyz --version

    if [ $is_root = 1 ]; then
        check "--help, user $USER_NAME, read-only HOME" 0 \
            as_other "$USER_NAME" "$py" env -i PATH=$BASE_PATH HOME="$work/rohome" "$py" k2vv.pyz --help
        check "--version, user $USER_NAME, read-only HOME" 0 \
            as_other "$USER_NAME" "$py" env -i PATH=$BASE_PATH HOME="$work/rohome" "$py" k2vv.pyz --version
        check "--version, user $USER_NAME, HOME unset" 0 \
            as_other "$USER_NAME" "$py" env -i PATH=$BASE_PATH "$py" k2vv.pyz --version
        check "--version, uid $NOPASSWD_UID without passwd entry, HOME unset" 0 \
            as_other "$NOPASSWD_UID" "$py" env -i PATH=$BASE_PATH "$py" k2vv.pyz --version
        check "./k2vv.pyz --version (shebang), user $USER_NAME, read-only HOME" 0 \
            as_other "$USER_NAME" "$py" env -i PATH="$(shim_path "$py")" HOME="$work/rohome" ./k2vv.pyz --version
        if echo "$help" | grep -qw lint; then
            # lint with no FILE checks the bundled open test set (read from inside the zip here); it
            # holds five dataset faults (BFCL tools whose integer or boolean enums list strings): exit 1
            check "lint (bundled test set), user $USER_NAME, read-only HOME" 1 \
                as_other "$USER_NAME" "$py" env -i PATH=$BASE_PATH HOME="$work/rohome" "$py" k2vv.pyz lint
        else
            echo "  skipped: lint not implemented yet"
        fi
        # run against a simulated vendor served by the pyz itself, then `score` the cache as another
        # user who can write neither HOME nor the cache: the summary must be byte-identical.
        sim_log="$work/sim-$v.log"
        env -i PATH=$BASE_PATH HOME="$home" "$py" k2vv.pyz serve-sim --personality sloppy --port 0 >"$sim_log" 2>&1 &
        sim_pid=$!
        for _ in $(seq 100); do grep -q '^http' "$sim_log" && break; sleep 0.1; done
        url=$(grep -m1 '^http' "$sim_log" || true)
        run_dir="$work/run-$v"; mkdir -p "$run_dir"; chmod 755 "$run_dir"
        job=(--base-url "$url" --model smoke --limit 25 --cache "$run_dir/cache")
        check "run against serve-sim ($url)" 1 env -i PATH=$BASE_PATH HOME="$home" "$py" k2vv.pyz run \
            "${job[@]}" --out "$run_dir/run" --quiet
        kill "$sim_pid" 2>/dev/null; wait "$sim_pid" 2>/dev/null
        score_dir=$(mktemp -d -p "$work"); chmod 777 "$score_dir"
        chmod -R a+rX,go-w "$run_dir"
        if check "score offline, user $USER_NAME, read-only HOME and cache" 1 as_other "$USER_NAME" "$py" \
                env -i PATH=$BASE_PATH HOME="$work/rohome" "$py" k2vv.pyz score "${job[@]}" --out "$score_dir"; then
            if cmp -s "$run_dir/run/summary.json" "$score_dir/summary.json"; then pass "score summary == run summary"
            else fail "score wrote a different summary.json than run"; fi
        fi
    else
        echo "  skipped: other-user cases (need root to switch user)"
        check "--version, HOME=/nonexistent" 0 env -i PATH=$BASE_PATH HOME=/nonexistent "$py" k2vv.pyz --version
        check "./k2vv.pyz --version (shebang)" 0 env -i PATH="$(shim_path "$py")" HOME=/nonexistent ./k2vv.pyz --version
    fi
done

# Older Pythons: one line naming the found and the needed version, exit 2, nothing extracted.
for v in 3.6 3.7 3.8 3.9; do
    py=$(find_python "$v")
    if [ -z "$py" ]; then echo "Python $v: not found, skipped"; continue; fi
    echo "Python $v: $py (must refuse)"
    home=$(mktemp -d -p "$work")
    for how in "$py k2vv.pyz" "./k2vv.pyz"; do
        if check "$how --version refuses" 2 env -i PATH="$(shim_path "$py")" HOME="$home" $how --version; then
            if [ "$(echo "$out" | wc -l)" = 1 ] && echo "$out" | grep -q "3\.10" \
                    && echo "$out" | grep -q "found $v" && ! echo "$out" | grep -q Traceback; then
                pass "one clear line: $out"
            else
                fail "refusal is not one clear line naming $v and 3.10:"; echo "$out" | sed 's/^/        | /'
            fi
        fi
    done
    if [ -e "$home/.shiv" ]; then fail "Python $v extracted into \$HOME/.shiv before refusing"; fi
done

if [ $fails != 0 ]; then echo "smoke-pyz: $fails check(s) FAILED" >&2; exit 1; fi
echo "smoke-pyz: all checks passed"

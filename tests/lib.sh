# lib.sh: the common start of the shell tests tests/cli_*.sh, which source it first with
#   . "$(dirname "$0")/lib.sh"
# It is not a test itself (ctest runs cli_*.sh only) and runs nothing but the set-up below.
#
# Sets: BIN, the diffuse binary (the script's $1, as ctest passes it); T, a fresh temporary directory
# removed on exit by `cleanup` (a script with more to undo, such as an unmount, redefines cleanup and
# removes "$T" itself: the EXIT trap calls whichever cleanup is defined last); pass and fails, the
# counters that ok/bad/check/expect_fail keep and finish reports.
set -u
BIN="$1"
T=$(mktemp -d)
cleanup() { rm -rf "$T"; }
trap cleanup EXIT
fails=0
pass=0

ok() { echo "ok $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fails=$((fails + 1)); }

# check NAME CMD...: passes when CMD succeeds.
check() {
    local name="$1"
    shift
    if "$@"; then ok "$name"; else bad "$name"; fi
}

# expect_fail NAME PATTERN CMD...: CMD must exit non-zero with exactly one stderr line, which matches
# the extended regex PATTERN. Its stdout and stderr are left in $T/out and $T/err.
expect_fail() {
    local name="$1" pattern="$2"
    shift 2
    "$@" >"$T/out" 2>"$T/err"
    local rc=$?
    if [ $rc -eq 0 ] || ! grep -qE -- "$pattern" "$T/err" || [ "$(grep -c . "$T/err")" -ne 1 ]; then
        bad "$name: rc=$rc, stderr: $(cat "$T/err")"
    else
        ok "$name: $(cat "$T/err")"
    fi
}

# finish NAME: the last command of a script: prints "NAME: N passed, M failed"; fails when any check did.
finish() {
    echo "$1: $pass passed, $fails failed"
    [ $fails -eq 0 ]
}

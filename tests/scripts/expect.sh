#!/bin/sh
# expect.sh [--rc N] [--match RE]... [--no-match RE]... -- CMD ARGS...
# The suite's runner for commands: a test passes only on CMD's exit status, never on a pass regex
# alone (with PASS_REGULAR_EXPRESSION CTest ignores the exit code, so an abort or a sanitizer report
# after the matched text passed). CMD runs with stdout and stderr merged; then
#   - its exit status must be N (default 0); 77 (a skip: no Vulkan device, no graphviz) is passed on
#     as 77, so the test must set SKIP_RETURN_CODE 77 or it fails, never passes;
#   - a status of 126 or more (a signal, an abort) fails even where a failure is expected;
#   - a sanitizer report in the output fails;
#   - each --match RE must match the whole output and each --no-match RE must not (Perl regex, `.`
#     matches a newline, `^`/`$` are the start and end of the output: CTest's regex semantics).
# Prints PASS or FAIL with the reason and exits 0 or 1.
want=0
n_match=0
n_nomatch=0
while [ $# -gt 0 ]; do
    case "$1" in
        --rc) want="$2"; shift 2 ;;
        --match) n_match=$((n_match + 1)); eval "match_$n_match=\$2"; shift 2 ;;
        --no-match) n_nomatch=$((n_nomatch + 1)); eval "nomatch_$n_nomatch=\$2"; shift 2 ;;
        --) shift; break ;;
        *) echo "expect.sh: unknown option '$1'"; exit 2 ;;
    esac
done
[ $# -gt 0 ] || { echo "expect.sh: no command"; exit 2; }

out=$(mktemp "${TMPDIR:-/tmp}/loom-expect.XXXXXX") || exit 1
trap 'rm -f "$out"' EXIT
"$@" > "$out" 2>&1
rc=$?
cat "$out"

fail() { echo "FAIL: $*"; exit 1; }
if [ $rc -eq 77 ] && [ "$want" -ne 77 ]; then
    echo "SKIP (exit 77)"
    exit 77
fi
[ $rc -ge 126 ] && [ "$want" -lt 126 ] && fail "crashed or killed (exit $rc): $*"
[ $rc -eq "$want" ] || fail "exit status $rc, expected $want: $*"
if grep -Eq 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|WARNING: ThreadSanitizer' "$out"; then
    fail "sanitizer report in the output"
fi
# one regex against the whole output: perl (perl-base is part of every Debian system)
re_found() { LOOM_RE="$1" perl -0777 -ne 'exit((/$ENV{LOOM_RE}/s) ? 0 : 1)' "$out"; }
i=1
while [ $i -le $n_match ]; do
    eval "re=\$match_$i"
    re_found "$re" || fail "output does not match /$re/"
    i=$((i + 1))
done
i=1
while [ $i -le $n_nomatch ]; do
    eval "re=\$nomatch_$i"
    re_found "$re" && fail "output matches /$re/, which it must not"
    i=$((i + 1))
done
echo "PASS (exit $rc)"
exit 0

#!/bin/sh
# expect_error.sh REGEX CMD...: CMD must fail cleanly (exit 1..125, not a signal or sanitizer abort)
# and print exactly one line on stderr matching REGEX (grep -E).
regex="$1"
shift
err=$("$@" 2>&1 >/dev/null)
rc=$?
if [ $rc -eq 0 ]; then
    echo "expected failure, got exit 0: $*"
    exit 1
fi
if [ $rc -ge 126 ]; then
    echo "crashed or killed (exit $rc): $*"
    echo "$err"
    exit 1
fi
lines=$(printf '%s\n' "$err" | grep -c .)
if ! printf '%s\n' "$err" | grep -Eq -- "$regex"; then
    echo "stderr does not match /$regex/:"
    echo "$err"
    exit 1
fi
if [ "$lines" -ne 1 ]; then
    echo "expected one error line, got $lines:"
    echo "$err"
    exit 1
fi
echo "ok (exit $rc): $err"

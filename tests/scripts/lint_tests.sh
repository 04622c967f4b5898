#!/bin/sh
# lint_tests.sh DIR: no test in DIR/*.cmake may be judged by a pass regex or WILL_FAIL (CTest then
# ignores the exit status, so a crash or a sanitizer report can pass): use tests/scripts/expect.sh.
bad=$(grep -n 'PASS_REGULAR_EXPRESSION\|WILL_FAIL' "$1"/*.cmake | grep -v '^[^:]*:[0-9]*:[[:space:]]*#')
if [ -n "$bad" ]; then
    printf '%s\n' "$bad"
    echo "FAIL: judge these tests by their exit status (LOOM_EXPECT, tests/CMakeLists.txt)"
    exit 1
fi
echo PASS

#!/bin/sh
# batch_cli.sh CASE LOOM MODEL: loom run with several sequences against single-sequence runs.
#   multi     three prompts decoded together print, labelled [i], what each prints alone (greedy)
#   file      --prompts-file (one prompt per line, blank lines skipped) equals -p repeated
#   parallel  --parallel 3 at temperature 0: three copies [1.j] of the greedy continuation
set -e
case_="$1" b="$2" m="$3"
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
run() { "$b" run -m "$m" -t 2 --device cpu "$@" 2>/dev/null; }
case "$case_" in
multi)
    for p in 'Once upon a time' 'The little dog' 'Lily'; do run -p "$p" -n 24; done > "$t/alone"
    run -p 'Once upon a time' -p 'The little dog' -p 'Lily' -n 24 > "$t/multi"
    [ "$(grep -c '^\[[123]\] ' "$t/multi")" = 3 ]
    sed 's/^\[[0-9]*\] //' "$t/multi" | diff "$t/alone" -
    ;;
file)
    printf 'Once upon a time\n\nLily\n' > "$t/prompts"
    run --prompts-file "$t/prompts" -n 16 > "$t/a"
    run -p 'Once upon a time' -p Lily -n 16 > "$t/b"
    [ -s "$t/a" ] && diff "$t/a" "$t/b"
    ;;
parallel)
    run -p 'Once upon a time' -n 20 > "$t/alone"
    run -p 'Once upon a time' -n 20 --parallel 3 > "$t/par"
    [ "$(grep -c . "$t/par")" = 3 ]
    for l in 1 2 3; do sed -n "${l}s/^\[1\.$l\] //p" "$t/par" | diff "$t/alone" -; done
    ;;
*) echo "unknown case $case_"; exit 2 ;;
esac
echo ok

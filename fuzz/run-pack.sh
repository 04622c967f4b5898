#!/bin/sh
# run-pack.sh SECONDS WORKERS [TARGET...]: run the libFuzzer targets of a pack made by
# fuzz/pack.sh. Give it the tarball's path in PACK (or run the copy inside an unpacked pack).
#
#   PACK=/path/fuzz-pack.tar.xz sh run-pack.sh 500 2
#
# Every target (default: all six) runs AT THE SAME TIME for SECONDS with -fork=WORKERS worker
# processes (so 6 x WORKERS cores are busy; SEQUENTIAL=1 runs them one after another instead).
# A target given as NAME:N gets N workers instead of WORKERS (e.g. `run-pack.sh 600 2 gguf:6 model`).
# Corpora are per target, in $WORK/corpus/TARGET (WORK defaults to ./loom-fuzz-work; kept, so a
# later run carries them on), seeded from the pack's seeds and every input that ever failed.
# Crashes, leaks, timeouts and OOMs do not stop a target (-ignore_crashes=1); their inputs land in
# $WORK/crashes/TARGET/. At the end it prints each target's executions (libFuzzer's own total over
# all workers), coverage and the files found, and copies logs, crash inputs and a tarball of the
# new corpora under $OUT when OUT is set.
set -u
SECONDS_EACH=${1:?usage: run-pack.sh SECONDS WORKERS [TARGET...]}
WORKERS=${2:?usage: run-pack.sh SECONDS WORKERS [TARGET...]}
shift 2
TARGETS=${*:-gguf safetensors tokenizer_json tokenize model serve_req}
WORK=${WORK:-$PWD/loom-fuzz-work}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)

# find or unpack the pack
here=$(cd "$(dirname "$0")" && pwd)
if [ -n "${PACK:-}" ]; then
    rm -rf "$WORK/loom-fuzz"
    xz -dc "$PACK" | tar -C "$WORK" -xf - || { echo "run-pack.sh: cannot unpack $PACK" >&2; exit 1; }
    R=$WORK/loom-fuzz
elif [ -x "$here/bin/fuzz_gguf" ]; then
    R=$here
else
    echo "run-pack.sh: set PACK=/path/to/fuzz-pack.tar.xz" >&2; exit 1
fi
export LOOM_FUZZ_ROOT=$R        # fuzz_tokenize reads its vocabularies from here
echo "run-pack.sh: pack $(cat "$R/COMMIT" | tr '\n' ' ')on $(nproc) cores; $SECONDS_EACH s x $WORKERS workers per target; work in $WORK"

run_one() {
    t=${1%%:*}; w=$WORKERS
    case $1 in *:*) w=${1#*:} ;; esac
    seeds=$t; [ "$t" = model ] && seeds=gguf
    mkdir -p "$WORK/corpus/$t" "$WORK/crashes/$t"
    dict=; [ -f "$R/fuzz/dict/$t.dict" ] && dict=-dict=$R/fuzz/dict/$t.dict
    regress=; [ -d "$R/regress/$t" ] && regress=$R/regress/$t
    # -fork: a worker that crashes is restarted; the parent merges new coverage into the corpus
    (cd "$WORK/crashes/$t" && exec "$R/bin/fuzz_$t" -fork="$w" -ignore_crashes=1 -ignore_timeouts=1 \
        -ignore_ooms=1 -max_total_time="$SECONDS_EACH" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$WORK/crashes/$t/" $dict \
        "$WORK/corpus/$t" "$R/fuzz/corpus/$seeds" $regress) > "$WORK/$t.log" 2>&1
    echo $? > "$WORK/$t.rc"
}

start=$(date +%s)
SPEC=$TARGETS
TARGETS=$(for t in $SPEC; do printf '%s ' "${t%%:*}"; done)
if [ "${SEQUENTIAL:-0}" = 1 ]; then
    for t in $SPEC; do run_one "$t"; done
else
    for t in $SPEC; do run_one "$t" & done
    wait
fi
echo "run-pack.sh: done in $(( $(date +%s) - start )) s"

# per-target totals: fork mode's status lines are "#EXECS: cov: C ft: F corp: N exec/s E
# oom/timeout/crash: a/b/c time: Ts job: J ..."; the last one holds the totals
printf '%-16s %14s %8s %8s %7s %9s %-18s %s\n' target executions exec/s cov ft corpus oom/timeout/crash files
for t in $TARGETS; do
    last=$(grep -E '^#[0-9]+: cov:' "$WORK/$t.log" | tail -1)
    execs=$(echo "$last" | sed -n 's/^#\([0-9]*\):.*/\1/p')
    cov=$(echo "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
    ft=$(echo "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
    corp=$(echo "$last" | sed -n 's/.* corp: \([0-9]*\).*/\1/p')
    eps=$(echo "$last" | sed -n 's/.* exec\/s \([0-9]*\).*/\1/p')
    otc=$(echo "$last" | sed -n 's/.* oom\/timeout\/crash: \([0-9/]*\).*/\1/p')
    nfiles=$(find "$WORK/crashes/$t" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
    printf '%-16s %14s %8s %8s %7s %9s %-18s %s\n' "$t" "${execs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "${otc:-?}" "$nfiles (rc $(cat "$WORK/$t.rc"))"
    [ -n "$last" ] || { echo "  no status line; end of $WORK/$t.log:"; tail -5 "$WORK/$t.log" | sed 's/^/  /'; }
done
found=$(find "$WORK/crashes" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \))
if [ -n "$found" ]; then
    echo "run-pack.sh: inputs that failed:"; echo "$found" | sed 's/^/  /'
    # the first sanitizer/libFuzzer report of each target
    for t in $TARGETS; do
        grep -m1 -A12 -E '^==[0-9]+==ERROR|runtime error:|^==[0-9]+== ERROR: libFuzzer' "$WORK/$t.log" | sed "s/^/  [$t] /"
    done
fi

if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"
    # at most a few files come back from the GPU machine: one tarball of logs + failing inputs,
    # one of the grown corpora
    tar -C "$WORK" -czf "$OUT/fuzz-results.tar.gz" $(cd "$WORK" && ls -d ./*.log ./*.rc crashes 2>/dev/null)
    tar -C "$WORK" -cJf "$OUT/fuzz-corpora.tar.xz" corpus
    ls -l "$OUT/fuzz-results.tar.gz" "$OUT/fuzz-corpora.tar.xz"
fi

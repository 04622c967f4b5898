#!/bin/sh
# fuzz/run-pack-detached.sh start|status|collect: run-pack.sh in the background on a machine that is
# lent call by call (the GPU machine's device tool): `start` detaches it (setsid, so it outlives the
# call that started it), pinned to CPUS at nice 10, so benchmarks can run on the other cores;
# `status` prints the last status line of each target; `collect` waits for it to finish and copies
# its summary and result tarballs to $OUT.
#   PACK=.gpu-cm/fuzz-pack.tar.xz CPUS=4-15 sh fuzz/run-pack-detached.sh start SECONDS WORKERS [TARGET[:N]...]
#   sh fuzz/run-pack-detached.sh collect
# Work, corpora and logs in $WORK (default /tmp/loom-fuzz-work), the summary in $WORK.summary.
here=$(cd "$(dirname "$0")" && pwd)
WORK=${WORK:-/tmp/loom-fuzz-work}
case ${1:-} in
start)
    shift
    : "${PACK:?set PACK to the fuzz pack}"
    PACK=$(cd "$(dirname "$PACK")" && pwd)/$(basename "$PACK")
    mkdir -p "$WORK.out"
    cp "$here/run-pack.sh" "$WORK.run-pack.sh"
    WORK=$WORK OUT=$WORK.out PACK=$PACK setsid taskset -c "${CPUS:-4-15}" nice -n 10 \
        sh -c 'sh "$0.run-pack.sh" "$@"; echo "run-pack-detached: exit $?"' "$WORK" "$@" >"$WORK.summary" 2>&1 </dev/null &
    echo "run-pack-detached: started ($*) on CPUs ${CPUS:-4-15}" ;;
status)
    for l in "$WORK"/*.log; do [ -f "$l" ] && echo "$(basename "$l"): $(grep -E '^#[0-9]+: cov:' "$l" | tail -1)"; done ;;
collect)
    for _ in $(seq 1 "${WAIT:-120}"); do grep -q "^run-pack-detached: exit" "$WORK.summary" 2>/dev/null && break; sleep 5; done
    cat "$WORK.summary"
    [ -n "${OUT:-}" ] && cp "$WORK.summary" "$WORK.out"/* "$OUT/" ;;
*)  echo "usage: run-pack-detached.sh start SECONDS WORKERS [TARGET[:N]...] | status | collect" >&2; exit 2 ;;
esac

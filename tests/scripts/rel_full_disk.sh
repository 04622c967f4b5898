#!/bin/sh
# rel_full_disk.sh LOOM FIXTURES: `loom synth` and `loom convert` onto a full disk (a 256 KiB tmpfs
# mounted in a private mount namespace) fail with one line naming the file and ENOSPC, and leave
# nothing behind. Needs root (or CAP_SYS_ADMIN) for the mount: skipped (77) without it; the same
# failure paths are covered without privileges by test_rel_limits (RLIMIT_FSIZE).
loom=$1
fx=$2
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/mnt"
if ! unshare -m sh -c "mount -t tmpfs -o size=256k tmpfs '$tmp/mnt'" 2>/dev/null; then
    echo "SKIP: cannot mount a tmpfs here (needs root)"
    exit 77
fi
exec unshare -m sh -c '
set -e
tmp=$1 loom=$2 fx=$3 here=$4
mount -t tmpfs -o size=256k tmpfs "$tmp/mnt"
"$here/expect_error.sh" "mnt/synth.gguf: write failed: No space left on device" \
    "$loom" synth --shape "$fx/llama-tiny/config.json" --dtype f32 -o "$tmp/mnt/synth.gguf"
"$here/expect_error.sh" "mnt/conv.gguf: write failed: No space left on device" \
    "$loom" convert "$fx/llama-tiny" "$tmp/mnt/conv.gguf"
left=$(ls -A "$tmp/mnt")
if [ -n "$left" ]; then echo "FAIL: files left on the full disk: $left"; exit 1; fi
df -k "$tmp/mnt" | tail -1
echo "ok: nothing left behind"
' sh "$tmp" "$loom" "$fx" "$here"

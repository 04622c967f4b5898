#!/bin/sh
# quantize_threads.sh LOOM HF_DIR TMPDIR [PRESET...]: `loom quantize` must write the same bytes with any thread
# count (formats/quantize.c shares each 4 MiB piece's rows among the threads). Every preset of a
# fixture whose rows are whole 256-blocks (K blocks really written), -t 1 against -t 3 (uneven
# shares) and -t 256 (more threads than the 128 rows of
# attn_k: clamped to the rows). PRESETs, when given, replace the twelve (the ASan build runs one:
# tests/quant.cmake). Exits 1 naming the first difference.
set -u
loom=$1 in=$2 tmp=$3
shift 3
presets=${*:-q4_0 q4_1 q5_0 q5_1 q8_0 q2_k q3_k_m q4_k_m q5_k_m q6_k iq4_nl iq4_xs}
n=0
mkdir -p "$tmp"
bad=0
# convert once (quantize would convert a HF directory on every run)
"$loom" convert "$in" "$tmp/in.gguf" >"$tmp/convert.log" 2>&1 || { echo "FAIL: convert: $(tail -1 "$tmp/convert.log")"; exit 1; }
in=$tmp/in.gguf
for ty in $presets; do
    n=$((n + 1))
    for t in 1 3 256; do
        if ! "$loom" quantize "$in" "$tmp/$ty-t$t.gguf" --type "$ty" -t $t 2>"$tmp/$ty-t$t.log"; then
            echo "FAIL: quantize --type $ty -t $t: $(tail -1 "$tmp/$ty-t$t.log")"; bad=1; continue
        fi
    done
    for t in 3 256; do
        if ! cmp "$tmp/$ty-t1.gguf" "$tmp/$ty-t$t.gguf"; then
            echo "FAIL: --type $ty: -t $t wrote a different file than -t 1"; bad=1
        fi
    done
done
[ $bad = 0 ] && echo "PASS: $n presets, -t 1 = -t 3 = -t 256 byte for byte"
exit $bad

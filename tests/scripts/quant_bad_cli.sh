#!/bin/sh
# quant_bad_cli.sh LOOM SRC.gguf TMPDIR KIND: a copy of SRC (tests/fixtures/peer-quant/
# llama-wide-iq4_xs.gguf, written by llama-quantize) with one field of blk.0.ffn_down.weight (IQ4_XS,
# rows of 512) broken, loaded by `loom run`: it must print one line naming the tensor and the
# problem and exit 1 (expect_error.sh). KIND: type (ggml type id 99), row (rows of 100 elements,
# not whole 256-blocks), nan (the f16 scale of its first block NaN). Byte offsets of that file:
# the record's ne[0] at 1198, its type at 1214, its data at 285600.
loom="$1" src="$2" dir="$3" kind="$4"
f="$dir/bad-$kind.gguf"
cp "$src" "$f" || exit 1
patch() { printf "$2" | dd of="$f" bs=1 seek="$1" conv=notrunc 2>/dev/null; }
case "$kind" in
type) patch 1214 '\143\000\000\000'; re="blk\.0\.ffn_down\.weight.*unknown ggml type 99" ;;
row) patch 1198 '\144\000\000\000\000\000\000\000'; re="blk\.0\.ffn_down\.weight.*100 elements.*iq4_xs" ;;
nan) patch 285600 '\000\176'; re="blk\.0\.ffn_down\.weight.*iq4_xs.*(NaN|nan|inf)" ;;
*) echo "unknown kind $kind"; exit 1 ;;
esac
exec "$(dirname "$0")/expect_error.sh" "$re" "$loom" run -m "$f" -p hi -n 1

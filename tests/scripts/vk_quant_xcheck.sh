#!/bin/sh
# vk_quant_xcheck.sh LOOM Q.gguf F32.gguf REF.safetensors: the Vulkan backend on quantised weights
# against the CPU on the same weights dequantised to f32 (`loom quantize Q F32 --type f32`). The
# CPU's quant kernels round activations to 8 bits and the Vulkan shaders do not, so comparing the
# two on Q itself would measure that rounding; on F32 the CPU multiplies exactly the values the
# shaders dequantise. Passes when the greedy tokens (32 steps) are identical and every figure
# `loom check` prints against REF (max abs errors, top-1 count, greedy mismatches) agrees to 0.2%,
# the 2-digit mean KL to 3%.
loom=$1 q=$2 f=$3 ref=$4
if ! "$loom" devices | grep -q '^vulkan:[0-9]'; then echo "SKIP: no Vulkan device"; exit 77; fi
a=$("$loom" run -m "$f" --tokens 1,2,3 -n 32 --ids --device cpu 2>/dev/null | tail -n 1)
b=$("$loom" run -m "$q" --tokens 1,2,3 -n 32 --ids --device vulkan 2>/dev/null | tail -n 1)
echo "cpu on f32 copy:    $a"
echo "vulkan on quantised: $b"
if [ -z "$a" ] || [ "$a" != "$b" ]; then echo "FAIL: greedy tokens differ"; exit 1; fi
pick='max abs|agreement|mean KL'
ca=$("$loom" check -m "$f" --reference "$ref" --min-top1 0 --device cpu 2>&1 | grep -E "$pick")
cb=$("$loom" check -m "$q" --reference "$ref" --min-top1 0 --device vulkan 2>&1 | grep -E "$pick")
printf 'cpu on f32 copy:\n%s\nvulkan on quantised:\n%s\n' "$ca" "$cb"
[ -n "$ca" ] || { echo "FAIL: no figures from loom check"; exit 1; }
printf '%s\n' "$ca" > "${TMPDIR:-/tmp}/vkx.$$.a"
printf '%s\n' "$cb" | awk -v A="${TMPDIR:-/tmp}/vkx.$$.a" '
  function nums(s, v,   n) { n = 0; while (match(s, /[0-9]+(\.[0-9]+)?(e[-+][0-9]+)?/)) { v[++n] = substr(s, RSTART, RLENGTH) + 0; s = substr(s, RSTART + RLENGTH) } return n }
  { if ((getline la < A) <= 0) { print "FAIL: line counts differ"; bad = 1; exit }
    na = nums(la, x); nb = nums($0, y); tol = index($0, "KL") ? 3e-2 : 2e-3
    if (na != nb) { print "FAIL: " la " / " $0; bad = 1; next }
    for (i = 1; i <= na; i++) { d = x[i] - y[i]; if (d < 0) d = -d; m = x[i] > y[i] ? x[i] : y[i]
      if (d > tol * m + 1e-12) { print "FAIL: differs: " la " / " $0; bad = 1 } } }
  END { if (!NR) { print "FAIL: no figures"; bad = 1 } exit bad }'
rc=$?
rm -f "${TMPDIR:-/tmp}/vkx.$$.a"
[ $rc -eq 0 ] && echo PASS
exit $rc

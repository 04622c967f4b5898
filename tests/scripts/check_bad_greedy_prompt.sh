#!/bin/sh
# check_bad_greedy_prompt.sh LOOM MODEL DIR VALUE: `loom check` of a reference whose metadata
# greedy_prompt is VALUE (not a length in [1, 3] here) must fail with one clear line naming the
# file and the value. The reference is written here: 2 input ids, 3 greedy ids, zero logits for a
# 512-token vocabulary (MODEL's).
loom=$1 model=$2 dir=$3 val=$4
mkdir -p "$dir" || exit 1
f="$dir/bad-greedy-prompt.safetensors"
hdr='{"__metadata__":{"greedy_prompt":"'"$val"'"},"input_ids":{"dtype":"I32","shape":[1,2],"data_offsets":[0,8]},"logits":{"dtype":"F32","shape":[2,512],"data_offsets":[8,4104]},"greedy_ids":{"dtype":"I32","shape":[1,3],"data_offsets":[4104,4116]},"greedy_logits":{"dtype":"F32","shape":[2,512],"data_offsets":[4116,8212]}}'
le64() { # $1 as 8 little-endian bytes
    v=$1 i=0
    while [ $i -lt 8 ]; do printf "\\$(printf %03o $((v % 256)))"; v=$((v / 256)) i=$((i + 1)); done
}
{ le64 ${#hdr}; printf '%s' "$hdr"; head -c 8212 /dev/zero; } > "$f" || exit 1
exec "$(dirname "$0")/expect_error.sh" "bad-greedy-prompt.safetensors: metadata greedy_prompt '$val' is not a length in \[1, 3\]" \
    "$loom" check -m "$model" --reference "$f" --device cpu

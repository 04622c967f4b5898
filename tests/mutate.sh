#!/bin/sh
# tests/mutate.sh [NAME...]: does the suite catch small deliberate bugs? (docs/reliability.md)
# Not part of CI: each mutant is a rebuild. The script copies the working tree (tracked and
# untracked, not ignored files) to $MUTATE_DIR/src (default build-mutate/), builds it once in
# $MUTATE_DIR/build, checks that every mutant's tests pass unmutated, then for each mutant:
# applies one literal substitution to one file (it must match), rebuilds, runs the tests that bear
# on it (`ctest -R`, a subset: a full run per mutant costs too much on a shared 2-core machine;
# MUTATE_ALL=1 runs the whole suite instead), restores the file. A mutant is KILLED when a test
# fails, SURVIVED when all pass. Prints a table (name, result, the tests that failed) and exits 1
# when one survived.
#   MUTATE_ASAN=1  build with -DLOOM_SANITIZE=ON (Debug), as `make asan` does
#   MUTATE_VULKAN=ON  also build the Vulkan backend (default OFF: the mutants are in CPU/host code)
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${MUTATE_DIR:-$root/build-mutate}
src=$dir/src
bld=$dir/build
jobs=${JOBS:-2}

# ---- the mutants: NAME | FILE | OLD (literal) | NEW | ctest -R regex ---------------------------
# OLD must occur in FILE; every occurrence is replaced.
mutants() {
cat <<'EOF'
rope_base_0.1pct|models/blocks.c|: hp->rope_theta,|: hp->rope_theta * 1.001f,|^(check_|rel_check)
rmsnorm_eps_1e-5|models/blocks.c|loom_rmsnorm(g, x, m->hp.norm_eps)|loom_rmsnorm(g, x, 1e-5f)|^(check_|rel_check)
attention_past_64|backends/cpu/cpu_backend.c|(int64_t)t->pos[s] + 1|(int64_t)t->pos[s] + (t->pos[s] > 64 ? 0 : 1)|^(check_|rel_check|test_batch|test_beam)
temperature_ignored|models/sampler.c|(logits[i] - mx) / s->o.temperature)|(logits[i] - mx))|^(test_sampler|run_)
top_p_one_short|models/sampler.c|k = i + 1;|k = i;|^(test_sampler|run_)
error_exits_0|tools/loom.c|return commands[i].main(argc - 1, argv + 1);|{ commands[i].main(argc - 1, argv + 1); return 0; }|^(err_|cli_|formats_cli|check_detects|check_q_detects|check_qwen3|quantize_)
tokenize_errors_exit_0|tools/cmd_tokenize.c|return 1;|return 0;|^cli_tokenize
check_always_passes|tools/cmd_check.c|rc = ok ? 0 : 1;|rc = 0;|^(check_|rel_check)
top_k_one_more|models/sampler.c|k = s->o.top_k;|k = s->o.top_k + 1;|^(test_sampler|run_)
greedy_tie_last|models/sampler.c|if (x[i] > x[best]) best = i;|if (x[i] >= x[best]) best = i;|^(test_sampler|run_)
sampler_ties_by_higher_id|models/sampler.c|return (x->id > y->id) - (x->id < y->id);|return (x->id < y->id) - (x->id > y->id);|^(test_sampler|run_)
rmsnorm_mean_n_minus_1|backends/cpu/cpu_scalar.c|sqrt(ss / (double)n + eps)|sqrt(ss / (double)(n - 1) + eps)|^(check_|diff_|test_ops)
silu_scalar_1pct|backends/cpu/cpu_scalar.c|return x / (1.0f + expf(-x));|return x / (1.0f + expf(-1.01f * x));|^(check_|diff_|test_ops)
q8_0_truncates|core/qblock.c|y[i].qs[j] = (int8_t)roundf(x[j] * id);|y[i].qs[j] = (int8_t)(x[j] * id);|^(test_quant|check_q_|quantize_)
q4_k_requant_drops_min|core/qblock.c|int v = nearest_int((x[32 * j + l] + dm) / dd);|int v = nearest_int(x[32 * j + l] / dd);|^(test_quant|check_q_|quantize_)
q6_k_top_level_lost|core/qblock.c|(q < -32 ? -32 : q > 31 ? 31 : q) + 32|(q < -32 ? -32 : q > 30 ? 30 : q) + 32|^(test_quant|check_q_|quantize_)
min_p_absolute|models/sampler.c|float floor_p = s->o.min_p * s->c[0].p;|float floor_p = s->o.min_p;|^(test_sampler|run_)
window_one_key_more|backends/cpu/cpu_backend.c|(int64_t)pos + 1 - window : 0;|(int64_t)pos - window : 0;|^(check_|rel_check|test_ops|test_batch)
attn_softcap_scalar_1pct|backends/cpu/cpu_scalar.c|sc[j] = softcap * tanhf(sc[j] / softcap);|sc[j] = softcap * tanhf(sc[j] / (1.01f * softcap));|^(check_|test_ops)
gelu_constant_scalar|backends/cpu/cpu_scalar.c|(x + 0.044715f * x * x * x)|(x + 0.045f * x * x * x)|^(check_|test_ops)
moe_no_renorm|backends/cpu/cpu_backend.c|(norm ? chosen : sum)|(sum)|^(check_|test_ops)
k_scale_high_bits_lost|core/qblock.c|((q[j - 4] >> 6) << 4)|0|^(test_quant|check_q_|quantize_)
kshift_sign|models/session.c|v[i] = -d;|v[i] = d;|^(test_ctx_shift|rel_ctx)
kshift_layer0_theta|models/blocks.c|loom_block_rope_params(g, m, l, hp->n_head_kv)|loom_block_rope_params(g, m, 0, hp->n_head_kv)|^(test_ctx_shift|rel_ctx)
beam_error_step|models/beam.c|t + 2, i)|t + 1, i)|^(test_rel_inputs|test_beam|run_)
EOF
}

want="$*"
selected() { [ -z "$want" ] && return 0; for w in $want; do [ "$w" = "$1" ] && return 0; done; return 1; }

mkdir -p "$dir"
# The copy is refreshed file by file: a file whose content changed gets a new mtime (so the
# incremental build redoes exactly what changed, even where a mutant's restore left an object newer
# than the tree's file); files gone from the tree go from the copy too.
echo "mutate: copying the working tree to $src"
stage=$dir/stage
rm -rf "$stage" && mkdir -p "$stage" "$src"
(cd "$root" && git ls-files -co --exclude-standard -z | xargs -0 sh -c 'for f; do [ -f "$f" ] && printf "%s\0" "$f"; done' sh |
    tar --null -T - -cf -) | tar -xf - -C "$stage" || { echo "mutate: copy failed"; exit 2; }
(cd "$stage" && find . -type f) | while read -r f; do
    cmp -s "$stage/$f" "$src/$f" || { mkdir -p "$(dirname "$src/$f")" && cp "$stage/$f" "$src/$f"; }
done
(cd "$src" && find . -type f) | while read -r f; do [ -f "$stage/$f" ] || rm -f "$src/$f"; done
set -- -DCMAKE_BUILD_TYPE=Release
[ "${MUTATE_ASAN:-0}" = 1 ] && set -- -DCMAKE_BUILD_TYPE=Debug -DLOOM_SANITIZE=ON
cmake -S "$src" -B "$bld" "$@" -DLOOM_VULKAN="${MUTATE_VULKAN:-OFF}" > "$dir/cmake.log" 2>&1 ||
    { echo "mutate: cmake failed (see $dir/cmake.log)"; exit 2; }
build() { cmake --build "$bld" -j "$jobs" > "$dir/build.log" 2>&1; }
build || { echo "mutate: the unmutated tree does not build (see $dir/build.log)"; exit 2; }
run_tests() { # REGEX LOG: 0 when all pass
    if [ "${MUTATE_ALL:-0}" = 1 ]; then (cd "$bld" && ctest --no-tests=error -j "$jobs" --timeout 300) > "$2" 2>&1
    else (cd "$bld" && ctest --no-tests=error -j "$jobs" --timeout 300 -R "$1") > "$2" 2>&1; fi
}
failed_tests() { sed -n '/The following tests FAILED/,$p' "$1" | sed -n 's/^[[:space:]]*[0-9]* - \([^ ]*\) .*/\1/p' | tr '\n' ' '; }

# baseline: every mutant's tests pass on the unmutated tree (else a "kill" would mean nothing)
regexes=$(mutants | while IFS='|' read -r name file old new re; do selected "$name" && printf '%s\n' "$re"; done | sort -u)
echo "mutate: baseline"
echo "$regexes" | while read -r re; do
    if ! run_tests "$re" "$dir/baseline.log"; then
        echo "mutate: tests /$re/ fail without any mutant: $(failed_tests "$dir/baseline.log")"
        exit 1
    fi
done || exit 2

results=$dir/results.txt
: > "$results"
mutants | while IFS='|' read -r name file old new re; do
    selected "$name" || continue
    f=$src/$file
    cp "$f" "$dir/orig"
    OLD=$old NEW=$new perl -0pi -e 's/\Q$ENV{OLD}\E/$ENV{NEW}/g' "$f"
    if cmp -s "$f" "$dir/orig"; then
        echo "mutate: $name: '$old' not found in $file (the mutant is stale: update it)"
        printf '%s|NOT APPLIED|\n' "$name" >> "$results"
        continue
    fi
    start=$(date +%s)
    if ! build; then
        verdict="KILLED (does not build)"; caught="build"
    elif run_tests "$re" "$dir/$name.log"; then
        verdict=SURVIVED; caught=""
    else
        verdict=KILLED; caught=$(failed_tests "$dir/$name.log")
    fi
    cp "$dir/orig" "$f"
    printf '%s|%s|%s\n' "$name" "$verdict" "$caught" >> "$results"
    echo "mutate: $name: $verdict in $(( $(date +%s) - start )) s (tests /$re/) $caught"
done
build
echo
echo "| mutant | result | failing tests |"
echo "|---|---|---|"
sed 's/^\([^|]*\)|\([^|]*\)|\(.*\)$/| \1 | \2 | \3 |/' "$results"
! grep -q '|SURVIVED|\||NOT APPLIED|' "$results"

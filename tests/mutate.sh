#!/bin/sh
# tests/mutate.sh [NAME...]: does the suite catch small deliberate bugs? (docs/reliability.md)
# Not part of CI: each mutant is a rebuild. The script never edits the working tree: it copies it
# (tracked and untracked, not ignored files) to $MUTATE_DIR/src (default build-mutate/) and mutates
# the copy. For each build in MUTATE_BUILDS (default "release asan") it configures
# $MUTATE_DIR/<build>, builds it and checks that the tests of every selected mutant pass unmutated.
# Then for each mutant: applies one literal substitution to one file of the copy (it must match),
# and in each build rebuilds incrementally (the mutated object, libloom, and only the executables
# that the mutant's tests run), runs the tests that bear on the mutated code (`ctest -R REGEX`,
# the regex is the mutant's last field below; MUTATE_ALL=1 runs the whole suite instead, which
# then rebuilds everything), restores the file byte for byte (also on Ctrl-C / SIGTERM: a trap) and
# checks it against the working tree. A mutant is KILLED in a build when a test fails by its exit
# status (ctest's verdict; a timeout counts) or when a test's output holds a sanitizer report
# (LastTest.log: ASan, LSan, UBSan "runtime error:"), even if that test exited 0; SURVIVED when
# all pass. Prints a table (name, then per build the result and the tests that failed) and exits 1
# when a mutant survived in any build or no longer applies.
#   MUTATE_BUILDS="release asan"  release: -DCMAKE_BUILD_TYPE=Release, as `make test` builds;
#                  asan: Debug + -DLOOM_SANITIZE=ON (ASan + UBSan, leak checking on), as `make asan`
#   MUTATE_VULKAN=ON  also build the Vulkan backend (default OFF: the mutants are in CPU and host
#                  code; `make asan` builds Vulkan too, whose tests then join the subsets)
#   MUTATE_ALL=1   run the whole suite for every mutant (slow: ~12 min per mutant under ASan)
#   JOBS=N         parallel build and ctest jobs (default 2)
{ # the whole script is one compound command, read before it runs: editing this file meanwhile is safe
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${MUTATE_DIR:-$root/build-mutate}
src=$dir/src
jobs=${JOBS:-2}
builds=${MUTATE_BUILDS:-release asan}

# ---- the mutants: NAME | FILE | OLD (literal) | NEW | ctest -R regex ---------------------------
# OLD must occur in FILE; every occurrence is replaced. The regex picks the tests that exercise the
# mutated code: the f32 model checks for model code (not the quantised ones, whose bounds are
# looser), the scalar checks for a scalar kernel, the families that use an op, the checks of the
# types a quantiser writes; every test that caught the mutant in the whole-suite run of
# 2026-12-04 is inside its regex. CTest fixtures (a converted or quantised model) come along.
mutants() {
cat <<'EOF'
rope_base_0.1pct|models/blocks.c|: hp->rope_theta,|: hp->rope_theta * 1.001f,|^(check_(llama|mistral|mixtral|phi3|olmo2|gemma|stories|qwen|detects)|rel_check)
rmsnorm_eps_1e-5|models/blocks.c|loom_rmsnorm(g, x, m->hp.norm_eps)|loom_rmsnorm(g, x, 1e-5f)|^(check_(llama|mistral|mixtral|phi3|olmo2|gemma|stories|qwen|detects)|rel_check)
attention_past_64|backends/cpu/cpu_backend.c|(int64_t)t->pos[s] + 1|(int64_t)t->pos[s] + (t->pos[s] > 64 ? 0 : 1)|^(check_[a-z0-9-]+_long|check_q_(llama-tiny|stories260K)_q8_0_)
temperature_ignored|models/sampler.c|expf((s->c[i].p - mx) / s->o.temperature)|expf(s->c[i].p - mx)|^(test_sampler|run_)
top_p_one_short|models/sampler.c|k = i + 1;|k = i;|^(test_sampler|run_)
error_exits_0|tools/loom.c|return commands[i].main(argc - 1, argv + 1);|{ commands[i].main(argc - 1, argv + 1); return 0; }|^(err_|cli_|formats_cli|check_detects|check_q_detects|check_qwen3|quantize_)
tokenize_errors_exit_0|tools/cmd_tokenize.c|return 1;|return 0;|^cli_tokenize
check_always_passes|tools/cmd_check.c|rc = ok ? 0 : 1;|rc = 0;|^(check_(llama|mistral|mixtral|phi3|olmo2|gemma|stories|qwen|detects)|rel_check)
top_k_one_more|models/sampler.c|k = s->o.top_k;|k = s->o.top_k + 1;|^(test_sampler|run_)
greedy_tie_last|models/sampler.c|if (x[i] > x[best]) best = i;|if (x[i] >= x[best]) best = i;|^(test_sampler|run_)
sampler_ties_by_higher_id|models/sampler.c|return (x->id > y->id) - (x->id < y->id);|return (x->id < y->id) - (x->id > y->id);|^(test_sampler|run_)
rmsnorm_mean_n_minus_1|backends/cpu/cpu_scalar.c|sqrt(ss / (double)n + eps)|sqrt(ss / (double)(n - 1) + eps)|^(check_(llama|mistral|mixtral|phi3|olmo2|gemma|stories|qwen)[^_]*(_gguf)?_scalar|diff_|test_ops)
silu_scalar_1pct|backends/cpu/cpu_scalar.c|return x / (1.0f + expf(-x));|return x / (1.0f + expf(-1.01f * x));|^(check_(llama|mistral|mixtral|phi3|olmo2|gemma|stories|qwen)[^_]*(_gguf)?_scalar|diff_|test_ops)
q8_0_truncates|core/qblock.c|y[i].qs[j] = (int8_t)roundf(x[j] * id);|y[i].qs[j] = (int8_t)(x[j] * id);|^(test_quant$|check_q_[a-z0-9-]+_(q8_0|q4_k_m|q6_k|q3_k_m|q5_k_m)_simd)
q4_k_requant_drops_min|core/qblock.c|int v = nearest_int((x[32 * j + l] + dm) / dd);|int v = nearest_int(x[32 * j + l] / dd);|^(test_quant$|check_q_[a-z0-9-]+_(q8_0|q4_k_m|q6_k|q3_k_m|q5_k_m)_simd)
q6_k_top_level_lost|core/qblock.c|(q < -32 ? -32 : q > 31 ? 31 : q) + 32|(q < -32 ? -32 : q > 30 ? 30 : q) + 32|^(test_quant$|check_q_[a-z0-9-]+_(q8_0|q4_k_m|q6_k|q3_k_m|q5_k_m)_simd)
min_p_absolute|models/sampler.c|float floor_p = s->o.min_p * s->c[0].p;|float floor_p = s->o.min_p;|^(test_sampler|run_)
window_one_key_more|backends/cpu/cpu_backend.c|(int64_t)pos + 1 - window : 0;|(int64_t)pos - window : 0;|^(check_(qwen2-swa|gemma2|gemma3)|test_ops)
attn_softcap_scalar_1pct|backends/cpu/cpu_scalar.c|sc[j] = softcap * tanhf(sc[j] / softcap);|sc[j] = softcap * tanhf(sc[j] / (1.01f * softcap));|^(check_gemma[^_]*(_gguf)?_(simd|scalar)|test_ops)
gelu_constant_scalar|backends/cpu/cpu_scalar.c|(x + 0.044715f * x * x * x)|(x + 0.045f * x * x * x)|^(check_gemma[^_]*(_gguf)?_(simd|scalar)|test_ops)
moe_no_renorm|backends/cpu/cpu_backend.c|(norm ? chosen : sum)|(sum)|^(check_(qwen3moe|mixtral)|test_ops)
k_scale_high_bits_lost|core/qblock.h|((s[j - 4] >> 6) << 4)|0|^(test_quant$|test_qblock$|check_q_[a-z0-9-]+_(q8_0|q4_k_m|q6_k|q3_k_m|q5_k_m)_simd)
kshift_sign|models/session.c|v[i] = -d;|v[i] = d;|^(test_ctx_shift|rel_ctx)
kshift_layer0_theta|models/blocks.c|loom_block_rope_params(g, m, l, hp->n_head_kv)|loom_block_rope_params(g, m, 0, hp->n_head_kv)|^(test_ctx_shift|rel_ctx)
beam_error_step|models/beam.c|t + 2, i)|t + 1, i)|^(test_rel_inputs|test_beam|run_)
error_path_leak|tools/cmd_convert.c|fprintf(stderr, "loom convert: %s\n", loom_last_error());|fprintf(stderr, "loom convert: %s\n", loom_last_error()); (void)!strdup(pos[0]);|^formats_cli_convert_missing
EOF
}
# Mutants that only a sanitizer can see (a leak on an error path): run in the asan build only; the
# other builds report them n/a.
sanitizer_only="error_path_leak"

want="$*"
selected() { [ -z "$want" ] && return 0; for w in $want; do [ "$w" = "$1" ] && return 0; done; return 1; }
list=$dir/mutants.txt
mkdir -p "$dir"
mutants | while IFS='|' read -r name file old new re; do selected "$name" && printf '%s|%s|%s|%s|%s\n' "$name" "$file" "$old" "$new" "$re"; done > "$list"
[ -s "$list" ] || { echo "mutate: no mutant named '$want'"; exit 2; }

# The copy is refreshed file by file: a file whose content changed gets a new mtime (so the
# incremental build redoes exactly what changed, even where a mutant's restore left an object newer
# than the tree's file); files gone from the tree go from the copy too. $stage keeps the tree's
# bytes, against which every restored file is compared.
echo "mutate: copying the working tree to $src"
stage=$dir/stage
rm -rf "$stage" && mkdir -p "$stage" "$src"
(cd "$root" && git ls-files -co --exclude-standard -z | xargs -0 sh -c 'for f; do [ -f "$f" ] && printf "%s\0" "$f"; done' sh |
    tar --null -T - -cf -) | tar -xf - -C "$stage" || { echo "mutate: copy failed"; exit 2; }
(cd "$stage" && find . -type f) | while read -r f; do
    cmp -s "$stage/$f" "$src/$f" || { mkdir -p "$(dirname "$src/$f")" && cp -p "$stage/$f" "$src/$f" && touch "$src/$f"; }
done
(cd "$src" && find . -type f) | while read -r f; do [ -f "$stage/$f" ] || rm -f "$src/$f"; done

# Ctrl-C, SIGTERM or any exit while a file is mutated: put it back first.
mutated=""
restore() {
    [ -n "$mutated" ] || return 0
    cp "$dir/orig" "$src/$mutated"
    cmp -s "$src/$mutated" "$stage/$mutated" || { echo "mutate: could not restore $src/$mutated"; exit 3; }
    mutated=""
}
trap 'restore' EXIT
trap 'restore; echo "mutate: interrupted; $src restored"; trap - EXIT; exit 130' INT TERM HUP

configure() { # BUILD
    case "$1" in
        release) set -- "$1" -DCMAKE_BUILD_TYPE=Release ;;
        asan) set -- "$1" -DCMAKE_BUILD_TYPE=Debug -DLOOM_SANITIZE=ON ;;
        *) echo "mutate: unknown build '$1' (release, asan)"; exit 2 ;;
    esac
    b=$1; shift
    cmake -S "$src" -B "$dir/$b" "$@" -DLOOM_VULKAN="${MUTATE_VULKAN:-OFF}" > "$dir/$b.cmake.log" 2>&1 ||
        { echo "mutate: cmake failed (see $dir/$b.cmake.log)"; exit 2; }
}
build_all() { cmake --build "$dir/$1" -j "$jobs" < /dev/null > "$dir/$1.build.log" 2>&1; }
# The executables a subset runs: loom-cli and every target whose file a test command names.
targets_for() { # BUILD REGEX
    if [ "${MUTATE_ALL:-0}" = 1 ]; then echo all; return; fi
    cmds=$(cd "$dir/$1" && ctest -N -V -R "$2" 2>/dev/null | sed -n 's/^[0-9]*: Test command: //p')
    t=loom-cli
    for x in $(cmake --build "$dir/$1" --target help 2>/dev/null | sed -n 's/^\.\.\. \([A-Za-z0-9_-]*\).*/\1/p'); do
        case "$x" in all|clean|depend|edit_cache|rebuild_cache|test|install*|list_install_components|loom|loom-cli) continue ;; esac
        printf '%s\n' "$cmds" | grep -Eq "/$x( |\"|\$)" && t="$t $x"
    done
    echo "$t"
}
build_for() { # BUILD TARGETS
    b=$1; shift
    # shellcheck disable=SC2086
    cmake --build "$dir/$b" -j "$jobs" --target $* < /dev/null > "$dir/$b.build.log" 2>&1
}
run_tests() { # BUILD REGEX LOG: 0 when all pass (the asan build leaves out what `make asan` does)
    set -- "$1" "$2" "$3" --no-tests=error -j "$jobs" --timeout 300
    [ "$1" = asan ] && set -- "$@" -LE sanitizer_redundant
    [ "${MUTATE_ALL:-0}" = 1 ] || set -- "$@" -R "$2"
    d=$1 log=$3; shift 3
    (cd "$dir/$d" && ctest "$@") < /dev/null > "$log" 2>&1
}
failed_tests() { sed -n '/The following tests FAILED/,$p' "$1" | sed -n 's/^[[:space:]]*[0-9]* - \([^ ]*\) .*/\1/p' | tr '\n' ' '; }
# Tests whose output (in the build's LastTest.log of the last ctest run) holds a sanitizer report.
san_tests() { # BUILD
    awk '/^[0-9]+\/[0-9]+ Testing: /{n=$3} /ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|WARNING: ThreadSanitizer/{if(!(n in s)){s[n]=1; printf "%s(san) ", n}}' \
        "$dir/$1/Testing/Temporary/LastTest.log" 2>/dev/null
}

for b in $builds; do
    configure "$b"
    # one regex for all the subsets: the names of the tests they select (CTest's regex allows only
    # 9 groups, so the subsets' own regexes cannot simply be joined)
    union="^($(while IFS='|' read -r _n _f _o _w re; do (cd "$dir/$b" && ctest -N -R "$re") |
        sed -n 's/^ *Test *#[0-9]*: //p'; done < "$list" | sort -u | sed 's/[].+*?^$()[{}\\]/\\&/g' | paste -sd'|' -))\$"
    echo "mutate: building $b"
    build_all "$b" || { echo "mutate: the unmutated tree does not build ($b, see $dir/$b.build.log)"; exit 2; }
    # baseline: every mutant's tests pass on the unmutated tree (else a "kill" would mean nothing)
    echo "mutate: baseline ($b)"
    if ! run_tests "$b" "$union" "$dir/$b.baseline.log" || [ -n "$(san_tests "$b")" ]; then
        echo "mutate: tests fail without any mutant ($b): $(failed_tests "$dir/$b.baseline.log") $(san_tests "$b")"
        exit 2
    fi
done

results=$dir/results.txt
: > "$results"
while IFS='|' read -r name file old new re <&3; do
    f=$src/$file
    cp "$f" "$dir/orig"
    mutated=$file
    OLD=$old NEW=$new perl -0pi -e 's/\Q$ENV{OLD}\E/$ENV{NEW}/g' "$f"
    if cmp -s "$f" "$dir/orig"; then
        restore
        echo "mutate: $name: '$old' not found in $file (the mutant is stale: update it)"
        printf '%s|NOT APPLIED|\n' "$name" >> "$results"
        continue
    fi
    line=$name
    for b in $builds; do
        start=$(date +%s)
        if [ "$b" != asan ] && printf ' %s ' $sanitizer_only | grep -q " $name "; then
            verdict="n/a (sanitizer only)"; caught=""
        elif ! build_for "$b" $(targets_for "$b" "$re"); then
            verdict="KILLED (does not build)"; caught="build"
        else
            run_tests "$b" "$re" "$dir/$name.$b.log"; rc=$?
            san=$(san_tests "$b")
            if [ $rc -eq 0 ] && [ -z "$san" ]; then verdict=SURVIVED; caught=""
            else verdict=KILLED; caught="$(failed_tests "$dir/$name.$b.log")$san"; fi
        fi
        echo "mutate: $name ($b): $verdict in $(( $(date +%s) - start )) s (tests /$re/) $caught"
        line="$line|$verdict|$caught"
    done
    restore
    printf '%s\n' "$line" >> "$results"
done 3< "$list"
# leave every build as the tree is
for b in $builds; do build_all "$b" || echo "mutate: rebuilding $b after the mutants failed"; done

echo
hdr="| mutant |"; sep="|---|"
for b in $builds; do hdr="$hdr $b | failing tests ($b) |"; sep="$sep---|---|"; done
echo "$hdr"; echo "$sep"
sed 's/|/ | /g; s/^/| /; s/$/ |/' "$results"
! grep -q 'SURVIVED\|NOT APPLIED' "$results"
exit
}

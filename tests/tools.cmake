# Tools: profile, diff, bench, dump; and the Qwen3 model (issue 4).

# Qwen3 against transformers 5.17 (tests/fixtures/qwen3-tiny/README.md), from the HF directory and
# its converted GGUF, scalar and SIMD kernels: tests/models.cmake, with the other fixtures.
# Must fail: Qwen3's reference is not met by other weights (qwen2-tiny), so the check compares something.
# (Dropping either per-head norm from models/qwen3.c fails check_qwen3-tiny_* with errors above 1.)
add_test(NAME check_qwen3_detects_error COMMAND ${LOOM_EXPECT} --rc 1 --match "logits +max abs [^\\n]*FAIL" --
         ${LOOM_BIN} check -m ${LOOM_FIXTURES}/qwen2-tiny --reference ${LOOM_FIXTURES}/qwen3-tiny/reference.safetensors
         --tol 1e-3 --device cpu -t 2)

# Trace schema and accounting (no timing assertion), bandwidth cache, dump JSON schema and per-pass counts (cJSON).
loom_unit_test(test_tools)
set_tests_properties(test_tools PROPERTIES
  ENVIRONMENT "LOOM_FIXTURES=${LOOM_FIXTURES};LOOM_BIN=$<TARGET_FILE:loom-cli>" TIMEOUT 300)

# loom diff: the SIMD and scalar kernels agree node by node ...
add_test(NAME diff_cpu_vs_scalar COMMAND ${LOOM_BIN} diff -m ${LOOM_FIXTURES}/qwen2-tiny
         --device cpu --device cpu:scalar -t 2)
# ... and an op the scalar kernels get wrong on purpose (LOOM_TEST_PERTURB, cpu_backend.c) is the
# first difference reported, with exit status 1.
foreach(case "qwen2-tiny;rmsnorm" "qwen3-tiny;attention" "llama-tiny;swiglu")
  list(GET case 0 fx)
  list(GET case 1 op)
  add_test(NAME diff_finds_${op} COMMAND sh -c
           "out=$(\"$0\" diff -m ${LOOM_FIXTURES}/${fx} --device cpu --device cpu:scalar -t 2); rc=$?; echo \"$out\"; \
            [ $rc -eq 1 ] && echo \"$out\" | grep -q 'first difference: prefill.*: ${op} '" ${LOOM_BIN})
  set_tests_properties(diff_finds_${op} PROPERTIES ENVIRONMENT "LOOM_TEST_PERTURB=${op}")
endforeach()
set(EXPECT_ERROR ${CMAKE_CURRENT_SOURCE_DIR}/scripts/expect_error.sh)
add_test(NAME err_diff_one_device COMMAND ${EXPECT_ERROR} "needs two devices"
         ${LOOM_BIN} diff -m ${LOOM_FIXTURES}/qwen2-tiny --device cpu)
add_test(NAME err_diff_bad_isa COMMAND ${EXPECT_ERROR} "cpu:sse.*unknown kernel flavour 'sse'"
         ${LOOM_BIN} diff -m ${LOOM_FIXTURES}/qwen2-tiny --device cpu --device cpu:sse)
add_test(NAME err_profile_trace_unwritable COMMAND ${EXPECT_ERROR} "--trace /nonexistent/t.json: cannot write"
         ${LOOM_BIN} profile -m ${LOOM_FIXTURES}/qwen2-tiny --trace /nonexistent/t.json)

# loom dump --format svg needs Graphviz, which the tests do not require: skipped (77) without dot.
# pipefail: a failing dump fails the test; grep without -q reads to the end (no SIGPIPE to loom).
add_test(NAME dump_svg COMMAND bash -c
         "set -o pipefail; command -v dot >/dev/null || { echo SKIP: no graphviz; exit 77; }; \"$0\" dump -m ${LOOM_FIXTURES}/qwen2-tiny --seq 3 --layers 0 --format svg | grep '</svg>' >/dev/null"
         ${LOOM_BIN})
set_tests_properties(dump_svg PROPERTIES SKIP_RETURN_CODE 77)
add_test(NAME err_dump_svg_all COMMAND ${EXPECT_ERROR} "svg draws one pass"
         ${LOOM_BIN} dump -m ${LOOM_FIXTURES}/qwen2-tiny --format svg --after all)
add_test(NAME err_dump_layers_range COMMAND ${EXPECT_ERROR} "--layers 7-7: .* has layers 0-1"
         ${LOOM_BIN} dump -m ${LOOM_FIXTURES}/qwen2-tiny --layers 7)

# loom bench names the machine (CPU model, SIMD flags, memory) and keeps llama-bench's JSON fields.
add_test(NAME bench_json_machine COMMAND ${LOOM_EXPECT} --match
  "\"cpu_info\": \"[^\"]+\".*\"gpu_info\": \".*\"backends\": \"CPU\".*\"avg_ns\": [0-9]+.*\"avg_ts\": [0-9.]+.*\"warmup_runs\": 1," --
  ${LOOM_BIN} bench -m ${LOOM_FIXTURES}/qwen2-tiny -p 8 -n 4 -r 1 -t 1 --device cpu --json --warmup 0)
# Warm-up runs until --warmup seconds passed, at most 100 runs: with 600 s a tiny model stops at the
# cap on any machine (no timing assertion; bench_json_machine has --warmup 0: exactly 1 run).
add_test(NAME bench_warmup_cap COMMAND ${LOOM_EXPECT} --match "\"warmup_runs\": 100," --
         ${LOOM_BIN} bench -m ${LOOM_FIXTURES}/qwen2-tiny -p 8 -n 0 -r 1 -t 1 --device cpu --warmup 600 --json)
add_test(NAME err_bench_warmup COMMAND ${EXPECT_ERROR} "--warmup expects a number in \\[0, 600\\], got .-1."
         ${LOOM_BIN} bench -m ${LOOM_FIXTURES}/qwen2-tiny --warmup -1)
# Per-sample figures (issue 18): every timed run in samples_ts/samples_ns, every warm-up run in
# warmup_samples_ts, and whether the warm-up settled (the last two within --settle percent). The
# shape only: whether a run settles depends on the machine. --settle 0 asks for no settling, so one
# warm-up run (--warmup 0) counts as settled; with settling asked, one run cannot be.
add_test(NAME bench_json_samples COMMAND ${LOOM_EXPECT}
  --match "\"n_gen\": 4,.*\"samples_ns\": \\[[0-9]+, [0-9]+, [0-9]+\\], \"samples_ts\": \\[[0-9.]+, [0-9.]+, [0-9.]+\\], \"warmup_runs\": ([2-9]|[1-9][0-9]+), \"warmup_samples_ts\": \\[[0-9.]+(, [0-9.]+)+\\], \"warmup_settled\": (true|false)," --
  ${LOOM_BIN} bench -m ${LOOM_FIXTURES}/qwen2-tiny -p 0 -n 4 -r 3 -t 1 --device cpu --json --warmup 0.01)
add_test(NAME bench_json_settle_off COMMAND ${LOOM_EXPECT}
  --match "\"warmup_runs\": 1, \"warmup_samples_ts\": \\[[0-9.]+\\], \"warmup_settled\": true," --
  ${LOOM_BIN} bench -m ${LOOM_FIXTURES}/qwen2-tiny -p 8 -n 0 -r 1 -t 1 --device cpu --json --warmup 0 --settle 0)
add_test(NAME bench_json_one_warmup COMMAND ${LOOM_EXPECT}
  --match "\"warmup_runs\": 1, \"warmup_samples_ts\": \\[[0-9.]+\\], \"warmup_settled\": false," --
  ${LOOM_BIN} bench -m ${LOOM_FIXTURES}/qwen2-tiny -p 8 -n 0 -r 1 -t 1 --device cpu --json --warmup 0)
add_test(NAME err_bench_settle COMMAND ${EXPECT_ERROR} "--settle expects a number in \\[0, 100\\], got .101."
         ${LOOM_BIN} bench -m ${LOOM_FIXTURES}/qwen2-tiny --settle 101)

# Vulkan, when built and a device exists (lavapipe counts): diff against the CPU, and a profile
# whose node times come from GPU timestamps.
get_target_property(_loom_tools_defs loom INTERFACE_COMPILE_DEFINITIONS)
if(_loom_tools_defs MATCHES "LOOM_HAVE_VULKAN")
  set(_vk_skip_tools "if ! \"$0\" devices | grep -q '^vulkan:[0-9]'; then echo SKIP: no Vulkan device; exit 77; fi; exec \"$0\" \"$@\"")
  add_test(NAME diff_vulkan_vs_cpu COMMAND sh -c "${_vk_skip_tools}" ${LOOM_BIN} diff
           -m ${LOOM_FIXTURES}/qwen3-tiny --device cpu:scalar --device vulkan)
  add_test(NAME profile_vulkan COMMAND ${LOOM_EXPECT} --match "== decode: 2 steps.*matmul" --
           sh -c "${_vk_skip_tools}" ${LOOM_BIN} profile -m ${LOOM_FIXTURES}/qwen2-tiny --device vulkan -p 8 -n 2 --no-peak)
  set_tests_properties(diff_vulkan_vs_cpu profile_vulkan PROPERTIES SKIP_RETURN_CODE 77)
endif()

# One table per command drives its parsing and --help (tools/options.c): every table entry of every
# command `loom --help` lists appears in its --help; an unknown option and a non-number / unknown
# word for each int, num and choice option exit 2 with one line naming it.
add_test(NAME options_help COMMAND ${LOOM_EXPECT} --match "^ok: " -- ${CMAKE_CURRENT_SOURCE_DIR}/scripts/options_help.sh ${LOOM_BIN})
set_tests_properties(options_help PROPERTIES TIMEOUT 120)
# loom bench -d (llama-bench's n_depth): tests named "@ dD", n_depth in the JSON; each run starts
# from the same D cached tokens (loom_session_truncate, checked by test_session_truncate).
loom_unit_test(test_session_truncate)
add_test(NAME bench_depth COMMAND ${LOOM_EXPECT}
  --match "\\| pp4 @ d6 \\|.*\\| tg2 \\|.*\\| tg2 @ d6 \\|" --
  ${LOOM_BIN} bench -m ${LOOM_FIXTURES}/qwen2-tiny -p 4 -n 2 -d 0,6 -r 2 -t 1 --device cpu --warmup 0)
add_test(NAME bench_depth_json COMMAND ${LOOM_EXPECT}
  --match "\"n_prompt\": 0, \"n_gen\": 3, \"n_depth\": 9," --
  ${LOOM_BIN} bench -m ${LOOM_FIXTURES}/qwen2-tiny -p 0 -n 3 -d 9 -r 1 -t 1 --device cpu --json --warmup 0)
add_test(NAME err_bench_depth_batch COMMAND ${EXPECT_ERROR} "-d runs single-sequence tests only"
         ${LOOM_BIN} bench -m ${LOOM_FIXTURES}/qwen2-tiny -d 4 -b 2)

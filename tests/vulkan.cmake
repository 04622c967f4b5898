# Vulkan backend tests (backends/vulkan). They run on lavapipe on a GPU-less CI box; with no
# Vulkan device at all each prints SKIP and exits 77.
get_target_property(_loom_defs loom INTERFACE_COMPILE_DEFINITIONS)
if(NOT _loom_defs MATCHES "LOOM_HAVE_VULKAN")
  return()
endif()

# Every op against the CPU backend's scalar kernels, both execution paths, three device configs.
loom_unit_test(test_vulkan_ops)
set_tests_properties(test_vulkan_ops PROPERTIES SKIP_RETURN_CODE 77)
# Its MOE cases alone (`test_vulkan_ops moe`) under LOOM_VK_MOE (vk_record.c rec_moe): gemv puts every
# row count on the expert GEMVs (matvec.comp MOE; the default takes them for <= 16 routed slots only),
# naive on moe_mm.comp (the A/B baseline); the recorder's trace (LOOM_VK_VERBOSE=2) shows the shader ran.
foreach(_m gemv naive)
  set(_sh matvec_moe_bf16)
  if(_m STREQUAL "naive")
    set(_sh moe_mm_bf16)
  endif()
  add_test(NAME test_vulkan_ops_moe_${_m} COMMAND ${LOOM_EXPECT} --match "LOOM_VK_MOE=${_m}\n.*: ${_sh} grid .*checks, 0 failed"
           -- $<TARGET_FILE:test_vulkan_ops> moe)
  set_tests_properties(test_vulkan_ops_moe_${_m} PROPERTIES SKIP_RETURN_CODE 77 LABELS sanitizer_redundant
                       ENVIRONMENT "LOOM_VK_MOE=${_m};LOOM_VK_VERBOSE=2")
endforeach()

# `loom devices` lists the CPU and at least one Vulkan device.
add_test(NAME vulkan_devices COMMAND ${LOOM_EXPECT} --match "cpu .*vulkan:0 .*subgroup" -- ${LOOM_BIN} devices)

# Model level: each fixture through `loom check --device vulkan` against transformers' reference,
# with the CPU's tolerances (tests/models.cmake). Skips (77) when `loom devices` finds no device.
set(_vk_skip "if ! \"$0\" devices | grep -q '^vulkan:[0-9]'; then echo SKIP: no Vulkan device; exit 77; fi; exec \"$0\" \"$@\"")
set(_vk_fixtures qwen2-tiny llama-tiny qwen2-tiny-bf16 stories260K-hf)
# (measured on lavapipe, 2026-12-04: 4.1e-6, 4.0e-6, 6.84e-3, 1.5e-5: within the CPU's figures)
# The bf16 checkpoint and the trained model run under the Khronos validation layer where it is
# installed (LOOM_VK_VALIDATE, tests/CMakeLists.txt): no errors or synchronization hazards in a
# whole model run.
foreach(fx ${_vk_fixtures})
  set(_wrap "")
  if(fx MATCHES "^(qwen2-tiny-bf16|stories260K-hf)$")
    set(_wrap ${LOOM_VK_VALIDATE})
  endif()
  add_test(NAME check_${fx}_vulkan COMMAND ${_wrap} ${LOOM_EXPECT} --match "on vulkan.*PASS" -- sh -c "${_vk_skip}"
           ${LOOM_BIN} check -m ${LOOM_FIXTURES}/${fx}
           --reference ${LOOM_FIXTURES}/${fx}/reference.safetensors --tol ${LOOM_TOL_${fx}} --device vulkan)
  set_tests_properties(check_${fx}_vulkan PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300)
  if(_wrap)
    set_tests_properties(check_${fx}_vulkan PROPERTIES LABELS vk_validated)
  endif()
endforeach()
# The GGUF form (llama.cpp's interleaved q/k rows, f32 weights) of the trained model.
add_test(NAME check_stories260K_gguf_vulkan COMMAND ${LOOM_EXPECT} --match "on vulkan.*PASS" -- sh -c "${_vk_skip}" ${LOOM_BIN} check
         -m ${LOOM_FIXTURES}/stories260K.gguf --reference ${LOOM_FIXTURES}/stories260K-hf/reference.safetensors
         --tol ${LOOM_TOL_stories260K-hf} --device vulkan)
set_tests_properties(check_stories260K_gguf_vulkan PROPERTIES SKIP_RETURN_CODE 77)
# Must fail: the same checkpoint with a RoPE base 0.1% off (LOOM_TEST_PERTURB) fails its own check.
add_test(NAME check_vulkan_detects_error COMMAND ${LOOM_EXPECT} --rc 1 --match "max abs [^\\n]*FAIL\\nFAIL\\n" --
         sh -c "${_vk_skip}" ${LOOM_BIN} check -m ${LOOM_FIXTURES}/qwen2-tiny
         --reference ${LOOM_FIXTURES}/qwen2-tiny/reference.safetensors --tol ${LOOM_TOL_qwen2-tiny} --device vulkan)
set_tests_properties(check_vulkan_detects_error PROPERTIES SKIP_RETURN_CODE 77 ENVIRONMENT "LOOM_TEST_PERTURB=rope_theta*1.001")
# LOOM_VK_CM2 (VK_NV_cooperative_matrix2 prefill matmul, off by default): where the device (lavapipe)
# or the build lacks it, one line says so and the model still checks out on the usual path; on a
# device with it, the verbose device line names the variant. An unknown value is one clear error.
add_test(NAME check_llama-tiny_vulkan_cm2_knob COMMAND ${LOOM_EXPECT}
         --match "(LOOM_VK_CM2=1: not on [^\n]*prefill matmuls stay on the [^\n]* path\n|coopmat2 m128).*on vulkan.*PASS"
         -- sh -c "${_vk_skip}" ${LOOM_BIN} check -m ${LOOM_FIXTURES}/llama-tiny
         --reference ${LOOM_FIXTURES}/llama-tiny/reference.safetensors --tol ${LOOM_TOL_llama-tiny} --device vulkan)
set_tests_properties(check_llama-tiny_vulkan_cm2_knob PROPERTIES SKIP_RETURN_CODE 77
                     ENVIRONMENT "LOOM_VK_CM2=1;LOOM_VK_VERBOSE=1")
add_test(NAME err_vulkan_cm2_unknown COMMAND ${LOOM_EXPECT} --rc 1 --match "LOOM_VK_CM2=bogus is not one of 1, m128, n256"
         -- sh -c "${_vk_skip}" ${LOOM_BIN} run -m ${LOOM_FIXTURES}/llama-tiny --tokens 1 -n 1 --device vulkan)
set_tests_properties(err_vulkan_cm2_unknown PROPERTIES SKIP_RETURN_CODE 77 ENVIRONMENT "LOOM_VK_CM2=bogus")
# LOOM_VK_CM_KSPLIT=3 (every tiled prefill matmul split 3 ways along K, partial products summed by a
# second dispatch; the A/B knob of the split-K choice, vk_record.c's ksplit_of) on llama-tiny, whose
# K of 128 / 256 the FMA kernel's 16-wide steps cut into 48 + 48 + 32 / 96 + 96 + 64 (the defaults
# split nothing there); the verbose line says the knob was taken. test_vulkan_ops / _quant under the
# knob (by hand: ~60 / ~140 s on lavapipe) pass too, their short K leaving some splits empty.
add_test(NAME check_llama-tiny_vulkan_ksplit3 COMMAND ${LOOM_EXPECT}
         --match "forced K splits \\(LOOM_VK_CM_KSPLIT\\).*on vulkan.*PASS"
         -- sh -c "${_vk_skip}" ${LOOM_BIN} check -m ${LOOM_FIXTURES}/llama-tiny
         --reference ${LOOM_FIXTURES}/llama-tiny/reference.safetensors --tol ${LOOM_TOL_llama-tiny} --device vulkan)
set_tests_properties(check_llama-tiny_vulkan_ksplit3 PROPERTIES SKIP_RETURN_CODE 77
                     ENVIRONMENT "LOOM_VK_CM_KSPLIT=3;LOOM_VK_VERBOSE=1")
# The other A/B knobs that take names (vk_device.c's knob tables): an unknown LOOM_VK_CM_VARIANT is
# one clear error listing this build's variants (base alone without the coopmat shaders); an unknown
# LOOM_VK_GEMV_Q (dp3: a valid prefix) is one line listing the values, and the run goes on with
# matvec.comp ("old").
add_test(NAME err_vulkan_cm_variant_unknown COMMAND ${LOOM_EXPECT} --rc 1
         --match "LOOM_VK_CM_VARIANT=bogus is not one of this build's: base(, sg64[^\n]*)?\n"
         -- sh -c "${_vk_skip}" ${LOOM_BIN} run -m ${LOOM_FIXTURES}/llama-tiny --tokens 1 -n 1 --device vulkan)
set_tests_properties(err_vulkan_cm_variant_unknown PROPERTIES SKIP_RETURN_CODE 77 ENVIRONMENT "LOOM_VK_CM_VARIANT=bogus")
add_test(NAME vulkan_gemv_q_unknown COMMAND ${LOOM_EXPECT}
         --match "LOOM_VK_GEMV_Q=dp3 is not one of old, qb, blk, blk1, blk2, blk4, dp, dp1, dp2, dp4, dpa; using old\n.*on vulkan"
         -- sh -c "${_vk_skip}" ${LOOM_BIN} run -m ${LOOM_FIXTURES}/llama-tiny --tokens 1 -n 1 --device vulkan)
set_tests_properties(vulkan_gemv_q_unknown PROPERTIES SKIP_RETURN_CODE 77 ENVIRONMENT "LOOM_VK_GEMV_Q=dp3")
# LOOM_VK_KUNIT (the K types' decode GEMV unit) the same way: one line, then its default
add_test(NAME vulkan_kunit_unknown COMMAND ${LOOM_EXPECT}
         --match "LOOM_VK_KUNIT=4 is not one of auto, 1, 2, s13, hp; using auto\n.*on vulkan"
         -- sh -c "${_vk_skip}" ${LOOM_BIN} run -m ${LOOM_FIXTURES}/llama-tiny --tokens 1 -n 1 --device vulkan)
set_tests_properties(vulkan_kunit_unknown PROPERTIES SKIP_RETURN_CODE 77 ENVIRONMENT "LOOM_VK_KUNIT=4")
# LOOM_VK_FA (the prefill attention kernel): =cm where the device has no cooperative matrices
# (lavapipe) is one line, and the usual kernel runs; on a device with them the verbose device line
# names attn_cm. An unknown value is one clear error listing the values.
add_test(NAME check_llama-tiny_vulkan_fa_cm_knob COMMAND ${LOOM_EXPECT}
         --match "(LOOM_VK_FA=cm: no cooperative matrices [^\n]*stays on attn_fa.comp\n|prefill attention attn_cm).*on vulkan.*PASS"
         -- sh -c "${_vk_skip}" ${LOOM_BIN} check -m ${LOOM_FIXTURES}/llama-tiny
         --reference ${LOOM_FIXTURES}/llama-tiny/reference.safetensors --tol ${LOOM_TOL_llama-tiny} --device vulkan)
set_tests_properties(check_llama-tiny_vulkan_fa_cm_knob PROPERTIES SKIP_RETURN_CODE 77
                     ENVIRONMENT "LOOM_VK_FA=cm;LOOM_VK_VERBOSE=1")
add_test(NAME err_vulkan_fa_unknown COMMAND ${LOOM_EXPECT} --rc 1 --match "LOOM_VK_FA=bogus is not one of cm, fa, row, cms, cmp, cmp8"
         -- sh -c "${_vk_skip}" ${LOOM_BIN} run -m ${LOOM_FIXTURES}/llama-tiny --tokens 1 -n 1 --device vulkan)
set_tests_properties(err_vulkan_fa_unknown PROPERTIES SKIP_RETURN_CODE 77 ENVIRONMENT "LOOM_VK_FA=bogus")
# A bad device index is one clear error, not a crash.
add_test(NAME err_vulkan_bad_index COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/scripts/expect_error.sh "vulkan: device 42 not found"
         ${LOOM_BIN} run -m ${LOOM_FIXTURES}/llama-tiny --tokens 1 -n 1 --device vulkan:42)

# Kernel micro-benchmark on qwen2-0.5b shapes: a tool, not a test (not registered with add_test).
add_executable(bench_vulkan ${CMAKE_SOURCE_DIR}/backends/vulkan/bench/bench_vulkan.c)
target_include_directories(bench_vulkan PRIVATE ${CMAKE_SOURCE_DIR})
target_link_libraries(bench_vulkan PRIVATE loom)

# Vulkan's fusions are a planner pass (vulkan-fuse, backends/vulkan/vk_fuse.c): loom dump shows
# them after the backend pass, in the pass log and the summary, with every rule firing on qwen2-tiny.
add_test(NAME dump_vulkan_fused COMMAND ${LOOM_EXPECT}
         --match "== backend \\(vulkan-fuse\\)[^\\n]*11 fused groups.* folded group=.*vulkan-fuse: rmsnorm-gemv \\('mul.6' into 'add.10', 'add.14', 'add.18'\\).*vulkan-fuse: rope-kv \\('rope.20' into 'kv_store.23'\\).*vulkan-fuse: rope-kv-attention \\('rope.19' into 'attention.25'\\).*vulkan-fuse: rope-kv-attention \\('kv_store.24' into 'attention.25'\\).*vulkan-fuse: gemv-add.*vulkan-fuse: swiglu-gemv.*summary: [^\\n]*\\(19 nodes folded by vulkan-fuse\\)"
         -- sh -c "${_vk_skip}" ${LOOM_BIN} dump -m ${LOOM_FIXTURES}/qwen2-tiny --phase decode --device vulkan --after all)
set_tests_properties(dump_vulkan_fused PROPERTIES SKIP_RETURN_CODE 77)

# Quantised weights on the Vulkan backend (issue 5): the shaders against the CPU's scalar quant
# kernels, then the quantised fixtures of tests/quant.cmake through `loom check --device vulkan`.
if(NOT TARGET test_vulkan_ops)
  return()
endif()
# Under the validation layer where it is installed (LOOM_VK_VALIDATE, tests/CMakeLists.txt): the
# shader test's byte-offset bindings, chunked weights and every quant pipeline, checked by the layer.
loom_unit_test(test_vulkan_quant WRAP ${LOOM_VK_VALIDATE})
set_tests_properties(test_vulkan_quant PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300)
# The decode GEMV cases (`test_vulkan_quant gemv`: the work split's edge shapes, the fusions) under a
# forced LOOM_VK_GEMV_Q: lavapipe's default (a CPU device: a GPU with integer dot products takes
# matvec_dp.comp with 1 row for every block type, vk_device.c) picks matvec_qb.comp with 4 rows for the
# 32-weight block types and matvec.comp for the rest at these small shapes (qb_rows_default), so `old`
# runs matvec.comp on every type and `blk4` matvec_qb.comp on the first four (Q8_0, Q4_0, Q4_K,
# Q6_K: Q4_K/Q6_K take it by default only on matrices of 16M weights or more; the rows loop does
# not depend on the block decoder). blk1/blk2 (passing, ~90 / 211 s with cold caches on the 2-core
# box) are left to hand runs. The blk4 run goes under the validation layer where it is installed.
foreach(v old blk4)
  set(_n 4)
  set(_wrap "")
  if(v STREQUAL "old")
    set(_n 12)
  else()
    set(_wrap ${LOOM_VK_VALIDATE})
  endif()
  add_test(NAME test_vulkan_quant_gemv_${v} COMMAND ${_wrap} $<TARGET_FILE:test_vulkan_quant> gemv ${_n})
  set_tests_properties(test_vulkan_quant_gemv_${v} PROPERTIES ENVIRONMENT LOOM_VK_GEMV_Q=${v} SKIP_RETURN_CODE 77
                       TIMEOUT 300)
endforeach()
# LOOM_VK_CM_QTILE=1 (in-tile dequantisation of the quantised prefill matmul): lavapipe has no
# cooperative matrices, so there it takes matmul_q.comp's QTILE build, whose W tiles come from the
# same decoders (shaders/qtile.glsl) as the tensor-core build's: `test_vulkan_quant qtile`'s cases
# (every type; fewer than the matmul part's, whose 1,140 checks take ~140 s cold on lavapipe under the
# knob: by hand) against the CPU. The tensor-core build runs only on a GPU (bench/gpu_qtile.sh).
add_test(NAME test_vulkan_quant_qtile COMMAND test_vulkan_quant qtile)
set_tests_properties(test_vulkan_quant_qtile PROPERTIES ENVIRONMENT LOOM_VK_CM_QTILE=1 SKIP_RETURN_CODE 77
                     TIMEOUT 300)
# The decode GEMV on x quantised to 8 bits (LOOM_VK_GEMV_Q=dp*: quantx.comp + matvec_dp.comp): dp1 (a
# GPU's default: one row per invocation) on all twelve types with integer dot products (lavapipe has
# shaderIntegerDotProduct), dp4 without them (LOOM_VK_NO_IDOT=1: the shift-and-multiply variant; the
# dot is the only difference, so four types), so the rows loop runs at 1 and 4 rows. The Q4_K / Q5_K /
# Q6_K units: dp1 takes the default's half-pair units (every case here is a small matrix), dp4 with
# LOOM_VK_KUNIT=s13 the one-sub-block (K <= 2048) and two-sub-block (the K = 2560 case) units. dp4 also
# polls fences before it blocks (LOOM_VK_SPIN_US, a GPU's default; 0 on lavapipe otherwise).
# Besides the q8-exact cases, random x and the fusions are held to the 8-bit rounding's bound
# (test_vulkan_quant.c's qx_bound), and the run fails unless that rounding was seen (the dp path ran).
# dp1 runs under the validation layer where it is installed (the integer-dot-product extension and
# feature enabled, quantx.comp's scratch hazards).
# Under a sanitizer dp1 takes the first four types (Q8_0, Q4_0, Q4_K, Q6_K: both block sizes, the
# qb and the K decoders), as dp4_noidot does: on the host a type changes only which matvec_dp pipeline
# dpshader() looks up (as for test_vulkan_quant_gemv_old, tests/CMakeLists.txt), and the eight
# others' shaders are lavapipe's work, checked under the layer by the release build's run of all 12
# (ASan: 14.9 CPU-s with 12 types, session 14).
set(_dp1_n 12)
if(LOOM_SANITIZE)
  set(_dp1_n 4)
endif()
add_test(NAME test_vulkan_quant_gemv_dp1 COMMAND ${LOOM_VK_VALIDATE} $<TARGET_FILE:test_vulkan_quant> gemv ${_dp1_n})
set_tests_properties(test_vulkan_quant_gemv_dp1 PROPERTIES ENVIRONMENT LOOM_VK_GEMV_Q=dp1 SKIP_RETURN_CODE 77 TIMEOUT 300)
add_test(NAME test_vulkan_quant_gemv_dp4_noidot COMMAND test_vulkan_quant gemv 4)
# (LOOM_VK_ATT_GW=8: the decode chain's attention with a kv head's 8 query heads a workgroup, the grouping before
# session 16; dp1 above keeps the default, one head a workgroup)
set_tests_properties(test_vulkan_quant_gemv_dp4_noidot PROPERTIES ENVIRONMENT "LOOM_VK_GEMV_Q=dp4;LOOM_VK_NO_IDOT=1;LOOM_VK_KUNIT=s13;LOOM_VK_SPIN_US=200;LOOM_VK_ATT_GW=8"
                     SKIP_RETURN_CODE 77 TIMEOUT 300)
# `test_vulkan_quant knobs`: what no run above takes on lavapipe, each against the CPU. (1) Q4_K / Q5_K
# weights bound off 16-byte alignment (shaders/qbunit.glsl khead / ld32k / ld16k when kal16() is false;
# matvec_dp.comp DP_GU's gate and up offsets, W_OFF_CUR): the models never bind one (every weight has its
# own buffer, and chunks start at whole 144 / 176-byte rows), so W is a quantised view 6 and 8 bytes into
# the arena, checked against the CPU and bit for bit against the same W at byte 0, through matvec_qb.comp
# (LOOM_VK_GEMV_Q=blk2, LOOM_VK_KUNIT=2), matvec_dp.comp's unit() (dp, KUNIT=1) and unit_hp() (dp2,
# KUNIT=hp, LOOM_VK_GEMV_U2=1), and gate/up in one dispatch with either one off alignment (dp2), and
# without it (LOOM_VK_FUSE_MAX_NK=4096: no fold). (2) The knob values: blk2, dp (4 rows on integer dot
# products: dp4_noidot takes the other build), dp2, dpa, LOOM_VK_KUNIT=1 / 2 / hp, LOOM_VK_GEMV_U2=1 (80
# units a row over 64 invocations) and LOOM_VK_FUSE_MAX_NK, each on a backend the test makes with them
# set. The units a knob picks all compute the same y, so the GEMV dispatch's shader and spec constant 3
# (rows, unit bits 7 / 8 / 9) are checked too, from the recorder's trace (LOOM_VK_VERBOSE=2 on those
# backends); LOOM_VK_FUSE_MAX_NK by the fold count. ~6 CPU-s with Mesa's shader cache cold, 0.8 warm
# (release, session 15).
add_test(NAME test_vulkan_quant_knobs COMMAND test_vulkan_quant knobs)
set_tests_properties(test_vulkan_quant_knobs PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300)
if(LOOM_VK_VALIDATE)
  set_tests_properties(test_vulkan_quant test_vulkan_quant_gemv_blk4 test_vulkan_quant_gemv_dp1 PROPERTIES LABELS vk_validated)
endif()

# Model level, on the quantised fixtures written by tests/quant.cmake (fixtures q_<fx>_<type>).
# llama-tiny's q4_k_m holds all four block types (Q4_K, Q6_K, and the Q4_0/Q8_0 fallbacks);
# llama-wide's q4_k_m and q6_k are K blocks throughout (about twice llama-tiny's time on lavapipe:
# qwen2-tiny's q8_0/q4_0, the same shaders as llama-tiny's, made room for them).
set(_vkq_fixtures llama-tiny llama-wide)
set(_vkq_types_llama-tiny ${LOOM_Q_TYPES_llama-tiny})
set(_vkq_types_llama-wide q4_k_m q6_k)
foreach(fx ${_vkq_fixtures})
  foreach(t ${_vkq_types_${fx}})
    set(q ${LOOM_Q_TMP}/${fx}-${t}.gguf)
    set(qf ${LOOM_Q_TMP}/${fx}-${t}-f32.gguf)
    # 1. against transformers' f32 reference over the long text, held to the CPU's bounds (the
    #    tight comparison is 2. below). llama-tiny's q4_k_m (all four block types, prefill and decode;
    #    the long text is where the layer found attn_fa.comp's shared memory over lavapipe's limit in
    #    session 9) runs under the validation layer where it is installed (LOOM_VK_VALIDATE,
    #    tests/CMakeLists.txt).
    loom_q_bound(${fx} ${t} top1 kl)
    set(_wrap "")
    if(fx STREQUAL "llama-tiny" AND t STREQUAL "q4_k_m")
      set(_wrap ${LOOM_VK_VALIDATE})
    endif()
    add_test(NAME check_q_${fx}_${t}_vulkan COMMAND ${_wrap} ${LOOM_EXPECT} --match "on vulkan.*PASS" -- sh -c "${_vk_skip}"
             ${LOOM_BIN} check -m ${q} --reference ${LOOM_Q_LREF_${fx}} --min-top1 ${top1} --max-kl ${kl} --device vulkan)
    set_tests_properties(check_q_${fx}_${t}_vulkan PROPERTIES FIXTURES_REQUIRED q_${fx}_${t}
                         SKIP_RETURN_CODE 77)
    if(_wrap)
      set_tests_properties(check_q_${fx}_${t}_vulkan PROPERTIES LABELS vk_validated)
    endif()
    # 2. against the CPU on the same weights dequantised to f32 (the CPU's quant kernels round
    #    activations to 8 bits, which flips near-tied tokens of the random fixtures)
    add_test(NAME dequantize_${fx}_${t} COMMAND ${LOOM_BIN} quantize ${q} ${qf} --type f32)
    set_tests_properties(dequantize_${fx}_${t} PROPERTIES FIXTURES_REQUIRED q_${fx}_${t}
                         FIXTURES_SETUP qf_${fx}_${t})
    add_test(NAME xcheck_q_${fx}_${t}_vulkan COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/scripts/vk_quant_xcheck.sh
             ${LOOM_BIN} ${q} ${qf} ${LOOM_Q_REF_${fx}})
    # LABELS sanitizer_redundant: `make asan` leaves it out (tests/CMakeLists.txt says why)
    set_tests_properties(xcheck_q_${fx}_${t}_vulkan PROPERTIES FIXTURES_REQUIRED "q_${fx}_${t};qf_${fx}_${t}"
                         SKIP_RETURN_CODE 77 LABELS sanitizer_redundant)
    # 2b. the 8-bit-x decode GEMV (LOOM_VK_GEMV_Q=dp1, a GPU's default) on llama-tiny's q4_k_m (Q4_K, Q6_K, Q4_0, Q8_0; the
    #     fusions; q/k/v and gate/up sharing one quantised x) against transformers with the CPU's bounds
    #     (the CPU rounds x to 8 bits as well; the f32-copy comparison of 2. is too tight for that)
    if(fx STREQUAL "llama-tiny" AND t STREQUAL "q4_k_m")
      add_test(NAME check_q_${fx}_${t}_vulkan_dp1 COMMAND ${LOOM_EXPECT} --match "on vulkan.*PASS" -- sh -c "${_vk_skip}" ${LOOM_BIN} check -m ${q}
               --reference ${LOOM_Q_LREF_${fx}} --min-top1 ${top1} --max-kl ${kl} --device vulkan)
      set_tests_properties(check_q_${fx}_${t}_vulkan_dp1 PROPERTIES FIXTURES_REQUIRED q_${fx}_${t}
                           ENVIRONMENT LOOM_VK_GEMV_Q=dp1 SKIP_RETURN_CODE 77)
    endif()
    # 3. the same with the block-at-a-time decode GEMV forced on every type (LOOM_VK_GEMV_Q=blk4), which
    #    the fused decode (RMSNORM / SWIGLU into the GEMV, the residual ADD) goes through as well;
    #    on the files of the four first types (lavapipe time: test_vulkan_quant_gemv_* covers every
    #    block decoder)
    if(NOT t MATCHES "^(q8_0|q4_0|q4_k_m|q6_k)$")
      continue()
    endif()
    add_test(NAME xcheck_q_${fx}_${t}_vulkan_gemv_blk4 COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/scripts/vk_quant_xcheck.sh
             ${LOOM_BIN} ${q} ${qf} ${LOOM_Q_REF_${fx}})
    set_tests_properties(xcheck_q_${fx}_${t}_vulkan_gemv_blk4 PROPERTIES FIXTURES_REQUIRED "q_${fx}_${t};qf_${fx}_${t}"
                         ENVIRONMENT LOOM_VK_GEMV_Q=blk4 SKIP_RETURN_CODE 77 LABELS sanitizer_redundant)
  endforeach()
endforeach()
# Must fail: the same comparison against another type's f32 copy (proves it compares something).
add_test(NAME xcheck_q_vulkan_detects_error COMMAND ${LOOM_EXPECT} --rc 1 --match "FAIL: greedy tokens differ|FAIL: differs" --
         ${CMAKE_CURRENT_SOURCE_DIR}/scripts/vk_quant_xcheck.sh
         ${LOOM_BIN} ${LOOM_Q_TMP}/llama-tiny-q4_0.gguf ${LOOM_Q_TMP}/llama-tiny-q8_0-f32.gguf
         ${LOOM_Q_REF_llama-tiny})
set_tests_properties(xcheck_q_vulkan_detects_error PROPERTIES SKIP_RETURN_CODE 77 LABELS sanitizer_redundant
                     FIXTURES_REQUIRED "q_llama-tiny_q4_0;qf_llama-tiny_q8_0")

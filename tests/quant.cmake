# Quantised weights (issue 5): unit tests, then `loom quantize` of the fixtures checked against the
# f32 reference by top-1 agreement and mean KL (docs/quantization.md has the measured figures).
loom_unit_test(test_quant)
# The same checks with the Q8_0 / Q4_0 rows kernel on AVX2 (LOOM_CPU_QAVX2=0: the code from before
# session 12's quant_q01_avx2.c, which stays for A/B timing; the direct calls still test the new one).
add_test(NAME test_quant_qavx2_0 COMMAND $<TARGET_FILE:test_quant>)
set_tests_properties(test_quant_qavx2_0 PROPERTIES ENVIRONMENT "LOOM_FIXTURES=${LOOM_FIXTURES};LOOM_CPU_QAVX2=0" TIMEOUT 300)
loom_unit_test(test_qblock)
loom_unit_test(test_quant_later)
# The same checks with the K-quant decode code from before 2026-12-06 (LOOM_CPU_KLATER=0: the rows
# kernel, the old Q5_K GEMV) and the IQ4 code from before session 12 (LOOM_CPU_IQ4AVX2=0: the
# per-block IQ4 GEMV, the scalar dequantiser for prefill) and the k-quant prefill from before session
# 13 (LOOM_CPU_KGEMM=0: Q4_K / Q6_K by LOOM_CPU_KDEQ, the others the f32 GEMM on scalar-dequantised
# rows; LOOM_CPU_Q32GEMM=0: Q4_1 / Q5_0 / Q5_1 the same) and Q4_1 / Q5_0 / Q5_1's per-block decode GEMV
# from before session 14 (LOOM_CPU_Q32GEMV=0), which stay for A/B timing. Under ASan these knob runs
# take random blocks where the default run quantises weights (test_quant_later.c knob_run: the
# quantisers run under ASan in the default run; 5.6 -> 2.7 ASan CPU-s each, session 15).
add_test(NAME test_quant_later_klater0 COMMAND $<TARGET_FILE:test_quant_later>)
set_tests_properties(test_quant_later_klater0 PROPERTIES ENVIRONMENT "LOOM_FIXTURES=${LOOM_FIXTURES};LOOM_CPU_KLATER=0;LOOM_CPU_IQ4AVX2=0;LOOM_CPU_KGEMM=0;LOOM_CPU_Q32GEMM=0;LOOM_CPU_Q32GEMV=0" TIMEOUT 300)
# The k-quants' AVX2 prefill through the int16 tile (LOOM_CPU_KGEMM=2, kept for A/B against the
# default 8-bit tile).
add_test(NAME test_quant_later_kgemm2 COMMAND $<TARGET_FILE:test_quant_later>)
set_tests_properties(test_quant_later_kgemm2 PROPERTIES ENVIRONMENT "LOOM_FIXTURES=${LOOM_FIXTURES};LOOM_CPU_KGEMM=2" TIMEOUT 300)

set(LOOM_Q_TMP ${CMAKE_BINARY_DIR}/quantized)
file(MAKE_DIRECTORY ${LOOM_Q_TMP})
# fixture | input | reference. The agreement checks use long_reference.safetensors (transformers
# over ~500-660 positions of story text, tests/fixtures/gen_long_reference.py): with the fixtures'
# own 47 positions one flip moved top-1 by 2.1%.
set(LOOM_Q_FIXTURES qwen2-tiny llama-tiny qwen3-tiny stories260K llama-wide)
set(LOOM_Q_IN_llama-wide ${LOOM_FIXTURES}/llama-wide)
set(LOOM_Q_REF_llama-wide ${LOOM_FIXTURES}/llama-wide/reference.safetensors)
set(LOOM_Q_IN_qwen2-tiny ${LOOM_FIXTURES}/qwen2-tiny)
set(LOOM_Q_IN_llama-tiny ${LOOM_FIXTURES}/llama-tiny)
set(LOOM_Q_IN_qwen3-tiny ${LOOM_FIXTURES}/qwen3-tiny)
set(LOOM_Q_IN_stories260K ${LOOM_FIXTURES}/stories260K.gguf)
set(LOOM_Q_REF_qwen2-tiny ${LOOM_FIXTURES}/qwen2-tiny/reference.safetensors)
set(LOOM_Q_REF_llama-tiny ${LOOM_FIXTURES}/llama-tiny/reference.safetensors)
set(LOOM_Q_REF_qwen3-tiny ${LOOM_FIXTURES}/qwen3-tiny/reference.safetensors)
set(LOOM_Q_REF_stories260K ${LOOM_FIXTURES}/stories260K-hf/reference.safetensors)
foreach(fx qwen2-tiny llama-tiny qwen3-tiny llama-wide)
  set(LOOM_Q_LREF_${fx} ${LOOM_FIXTURES}/${fx}/long_reference.safetensors)
endforeach()
set(LOOM_Q_LREF_stories260K ${LOOM_FIXTURES}/stories260K-hf/long_reference.safetensors)
# Bounds: min top-1 %, max mean KL. Measured (CPU, 2026-11-23, docs/quantization.md): q8_0 top-1
# 99.0% on the trained stories260K (504 positions), 93.0-95.7% on the random-weight tiny fixtures
# (690 positions), whose logits are near-ties: even their q8_0 weights dequantised to f32 and run
# in f32 agree on only 94.9-96.2%, so the issue's 98% is asserted on the trained model, and the
# random fixtures are held to what their weights allow.
set(LOOM_Q_TYPES q8_0 q4_0 q4_k_m q6_k)
# The K types where they write K blocks: llama-wide (every row divides 256: all Q4_K/Q6_K) and
# llama-tiny (a mix of K blocks and fallbacks). On qwen2-tiny, qwen3-tiny and stories260K (rows of
# 64-128) q4_k_m and q6_k fall back to Q4_0/Q8_0 almost everywhere, and their results were the
# q8_0/q4_0 tests' again: they run q8_0 and q4_0 only (quantize_kquant_fallback keeps the fallback).
# The later presets (issue 17) run on the trained stories260K (mostly their 32-block fallbacks
# there), llama-tiny (a mix) and llama-wide (their real K blocks), SIMD flavour only.
set(LOOM_Q_TYPES_LATER q4_1 q5_0 q5_1 q2_k q3_k_m q5_k_m iq4_nl iq4_xs)
set(LOOM_Q_TYPES_qwen2-tiny q8_0 q4_0)
set(LOOM_Q_TYPES_qwen3-tiny q8_0 q4_0)
set(LOOM_Q_TYPES_stories260K q8_0 q4_0 ${LOOM_Q_TYPES_LATER})
set(LOOM_Q_TYPES_llama-tiny ${LOOM_Q_TYPES} ${LOOM_Q_TYPES_LATER})
set(LOOM_Q_TYPES_llama-wide ${LOOM_Q_TYPES} ${LOOM_Q_TYPES_LATER})
# What each quantize run must write (its log's type counts), so a preset that silently falls back,
# or quantises a norm, fails. Since 2026-12-04 these are llama.cpp's mixes (the head Q6_K, or Q8_0
# where its rows are not whole blocks; more bits for some attn_v / ffn_down / attn_output; its
# fallbacks), checked against llama-quantize on the qwen2-0.5b shape (docs/quantization.md).
set(LOOM_Q_COUNTS_qwen2-tiny_q8_0 "11 f32 2 f16 13 q8_0")
set(LOOM_Q_COUNTS_qwen2-tiny_q4_0 "11 f32 2 f16 1 q8_0 12 q4_0")
set(LOOM_Q_COUNTS_qwen3-tiny_q8_0 "9 f32 15 q8_0")
set(LOOM_Q_COUNTS_qwen3-tiny_q4_0 "9 f32 1 q8_0 14 q4_0")
set(LOOM_Q_COUNTS_stories260K_q8_0 "11 f32 5 f16 32 q8_0")
set(LOOM_Q_COUNTS_stories260K_q4_0 "11 f32 5 f16 1 q8_0 31 q4_0")
set(LOOM_Q_COUNTS_stories260K_q4_1 "11 f32 5 f16 1 q8_0 31 q4_1")
set(LOOM_Q_COUNTS_stories260K_q5_0 "11 f32 5 f16 1 q8_0 31 q5_0")
set(LOOM_Q_COUNTS_stories260K_q5_1 "11 f32 5 f16 1 q8_0 31 q5_1")
set(LOOM_Q_COUNTS_stories260K_q2_k "11 f32 5 f16 1 q8_0 31 q4_0")
set(LOOM_Q_COUNTS_stories260K_q3_k_m "11 f32 5 f16 1 q8_0 21 q4_0 8 q5_0 2 q5_1")
set(LOOM_Q_COUNTS_stories260K_q5_k_m "11 f32 5 f16 3 q8_0 29 q5_1")
set(LOOM_Q_COUNTS_stories260K_iq4_nl "11 f32 5 f16 1 q8_0 31 iq4_nl")
set(LOOM_Q_COUNTS_stories260K_iq4_xs "11 f32 5 f16 1 q8_0 31 iq4_nl")
set(LOOM_Q_COUNTS_llama-tiny_q8_0 "5 f32 16 q8_0")
set(LOOM_Q_COUNTS_llama-tiny_q4_0 "5 f32 1 q8_0 15 q4_0")
set(LOOM_Q_COUNTS_llama-tiny_q4_k_m "5 f32 2 q8_0 1 q4_K 1 q6_K 12 q5_0")
set(LOOM_Q_COUNTS_llama-tiny_q6_k "5 f32 14 q8_0 2 q6_K")
set(LOOM_Q_COUNTS_llama-tiny_q4_1 "5 f32 1 q8_0 15 q4_1")
set(LOOM_Q_COUNTS_llama-tiny_q5_0 "5 f32 1 q8_0 15 q5_0")
set(LOOM_Q_COUNTS_llama-tiny_q5_1 "5 f32 1 q8_0 15 q5_1")
set(LOOM_Q_COUNTS_llama-tiny_q2_k "5 f32 1 q8_0 13 q4_0 2 q3_K")
set(LOOM_Q_COUNTS_llama-tiny_q3_k_m "5 f32 1 q8_0 9 q4_0 2 q4_K 2 q5_0 2 q5_1")
set(LOOM_Q_COUNTS_llama-tiny_q5_k_m "5 f32 2 q8_0 1 q6_K 12 q5_1 1 q5_K")
set(LOOM_Q_COUNTS_llama-tiny_iq4_nl "5 f32 1 q8_0 15 iq4_nl")
set(LOOM_Q_COUNTS_llama-tiny_iq4_xs "5 f32 1 q8_0 13 iq4_nl 2 iq4_xs")
set(LOOM_Q_COUNTS_llama-wide_q8_0 "5 f32 16 q8_0")
set(LOOM_Q_COUNTS_llama-wide_q4_0 "5 f32 15 q4_0 1 q6_K")
set(LOOM_Q_COUNTS_llama-wide_q4_k_m "5 f32 13 q4_K 3 q6_K")
set(LOOM_Q_COUNTS_llama-wide_q6_k "5 f32 16 q6_K")
set(LOOM_Q_COUNTS_llama-wide_q4_1 "5 f32 1 q6_K 15 q4_1")
set(LOOM_Q_COUNTS_llama-wide_q5_0 "5 f32 1 q6_K 15 q5_0")
set(LOOM_Q_COUNTS_llama-wide_q5_1 "5 f32 1 q6_K 15 q5_1")
set(LOOM_Q_COUNTS_llama-wide_q2_k "5 f32 1 q6_K 9 q2_K 6 q3_K")
set(LOOM_Q_COUNTS_llama-wide_q3_k_m "5 f32 4 q4_K 1 q6_K 9 q3_K 2 q5_K")
set(LOOM_Q_COUNTS_llama-wide_q5_k_m "5 f32 3 q6_K 13 q5_K")
set(LOOM_Q_COUNTS_llama-wide_iq4_nl "5 f32 1 q6_K 15 iq4_nl")
set(LOOM_Q_COUNTS_llama-wide_iq4_xs "5 f32 1 q6_K 15 iq4_xs")
set(LOOM_Q_BOUND_q8_0 "92;1e-3")
set(LOOM_Q_BOUND_q6_k "92;2e-3")
set(LOOM_Q_BOUND_q4_0 "40;0.1")
set(LOOM_Q_BOUND_q4_k_m "45;0.1")
# the trained model: q8_0 and q6_k at the issue's 98%, the 4-bit types at 80% / 85%
set(LOOM_Q_TRAINED_TOP1_q8_0 98)
set(LOOM_Q_TRAINED_TOP1_q6_k 98)
set(LOOM_Q_TRAINED_TOP1_q4_0 80)
set(LOOM_Q_TRAINED_TOP1_q4_k_m 85)
# The later presets, measured 2026-12-04 on the CPU (min top-1 over qwen2-/llama-/qwen3-tiny / max
# KL; the trained stories260K): q4_1 51.0% / 4.7e-2, 89.7%; q5_0 71.4% / 1.7e-2, 94.4%; q5_1 73.9% /
# 1.1e-2, 94.2%; q2_k 44.5% / 6.6e-2, 88.5%; q3_k_m 56.1% / 4.2e-2, 88.7%; q5_k_m 75.1% / 1.0e-2,
# 94.8%; iq4_nl 51.3% / 5.0e-2, 89.5%; iq4_xs 51.2% / 5.0e-2, 89.5%.
set(LOOM_Q_BOUND_q4_1 "45;0.07")
set(LOOM_Q_BOUND_q5_0 "65;0.025")
set(LOOM_Q_BOUND_q5_1 "65;0.02")
set(LOOM_Q_BOUND_q2_k "38;0.1")
set(LOOM_Q_BOUND_q3_k_m "50;0.06")
set(LOOM_Q_BOUND_q5_k_m "68;0.02")
set(LOOM_Q_BOUND_iq4_nl "45;0.075")
set(LOOM_Q_BOUND_iq4_xs "45;0.075")
set(LOOM_Q_TRAINED_TOP1_q4_1 85)
set(LOOM_Q_TRAINED_TOP1_q5_0 90)
set(LOOM_Q_TRAINED_TOP1_q5_1 90)
set(LOOM_Q_TRAINED_TOP1_q2_k 83)
set(LOOM_Q_TRAINED_TOP1_q3_k_m 84)
set(LOOM_Q_TRAINED_TOP1_q5_k_m 90)
set(LOOM_Q_TRAINED_TOP1_iq4_nl 85)
set(LOOM_Q_TRAINED_TOP1_iq4_xs 85)
# llama-wide (random weights, 690 positions; measured 2026-12-04 on scalar / AVX2 / AVX-512):
# q8_0 92.5-92.9% / 1.5e-3, q4_0 37.4-37.5% / 0.18, q4_k_m 49.0-49.6% / 0.13, q6_k 81.4-82.2% /
# 9.5e-3. Bounds: ~2.5 points under the lowest top-1, ~1.25x the KL.
set(LOOM_Q_BOUND_llama-wide_q8_0 "90;2e-3")
set(LOOM_Q_BOUND_llama-wide_q4_0 "35;0.22")
set(LOOM_Q_BOUND_llama-wide_q4_k_m "46;0.16")
set(LOOM_Q_BOUND_llama-wide_q6_k "79;1.2e-2")
# llama-wide with the later presets (2026-12-04, SIMD; q4_0 / q4_k_m with llama.cpp's mixes: 38.4%
# / 0.18, 49.0% / 0.13): q4_1 41.2% / 0.15, q5_0 66.1% / 5.0e-2, q5_1 69.4% / 3.9e-2, q2_k 4.2% /
# 0.90, q3_k_m 22.5% / 0.38, q5_k_m 67.1% / 3.3e-2, iq4_nl 47.8% / 0.13, iq4_xs 47.0% / 0.14. The
# peer's own llama-quantize files of llama-wide, loaded by loom: Q2_K 5.4% / 0.90, Q3_K_M 21.4% /
# 0.40 (random weights and 2-3 bits: the quantisation itself, not the decoder).
set(LOOM_Q_BOUND_llama-wide_q4_1 "38;0.19")
set(LOOM_Q_BOUND_llama-wide_q5_0 "63;0.063")
set(LOOM_Q_BOUND_llama-wide_q5_1 "66;0.05")
set(LOOM_Q_BOUND_llama-wide_q2_k "2;1.1")
set(LOOM_Q_BOUND_llama-wide_q3_k_m "19;0.48")
set(LOOM_Q_BOUND_llama-wide_q5_k_m "64;0.042")
set(LOOM_Q_BOUND_llama-wide_iq4_nl "45;0.17")
set(LOOM_Q_BOUND_llama-wide_iq4_xs "44;0.18")
# loom_q_bound(FX TYPE TOP1_VAR KL_VAR): the fixture's own bounds for TYPE, else the type's.
function(loom_q_bound fx t top1_var kl_var)
  set(bound ${LOOM_Q_BOUND_${t}})
  if(DEFINED LOOM_Q_BOUND_${fx}_${t})
    set(bound ${LOOM_Q_BOUND_${fx}_${t}})
  endif()
  list(GET bound 0 top1)
  list(GET bound 1 kl)
  set(${top1_var} ${top1} PARENT_SCOPE)
  set(${kl_var} ${kl} PARENT_SCOPE)
endfunction()
foreach(fx ${LOOM_Q_FIXTURES})
  foreach(t ${LOOM_Q_TYPES_${fx}})
    set(out ${LOOM_Q_TMP}/${fx}-${t}.gguf)
    add_test(NAME quantize_${fx}_${t} COMMAND ${LOOM_EXPECT} --match "quantize: ${t}: ${LOOM_Q_COUNTS_${fx}_${t}}\n" --
             ${LOOM_BIN} quantize ${LOOM_Q_IN_${fx}} ${out} --type ${t})
    set_tests_properties(quantize_${fx}_${t} PROPERTIES FIXTURES_SETUP q_${fx}_${t})
    loom_q_bound(${fx} ${t} top1 kl)
    if(fx STREQUAL "stories260K")
      set(top1 ${LOOM_Q_TRAINED_TOP1_${t}})
    endif()
    set(flavours simd scalar)
    if(t IN_LIST LOOM_Q_TYPES_LATER)
      set(flavours simd)
    endif()
    foreach(flavour ${flavours})
      set(extra "")
      if(flavour STREQUAL "scalar")
        set(extra --scalar)
      endif()
      add_test(NAME check_q_${fx}_${t}_${flavour} COMMAND ${LOOM_BIN} check -m ${out} --reference ${LOOM_Q_LREF_${fx}}
               --min-top1 ${top1} --max-kl ${kl} --device cpu -t 2 ${extra})
      set_tests_properties(check_q_${fx}_${t}_${flavour} PROPERTIES FIXTURES_REQUIRED q_${fx}_${t})
    endforeach()
  endforeach()
endforeach()

# The tiny fixtures' rows (128) are not whole 256-blocks: q4_k_m falls back to Q5_0 (the head and
# the more-bits layers to Q8_0; ffn_down, inner 344, to f16), as llama.cpp, and says so in one line.
add_test(NAME quantize_kquant_fallback COMMAND ${LOOM_EXPECT}
         --match "q4_k_m: 11 f32 2 f16 2 q8_0 11 q5_0.*14 matrices with rows that are not whole blocks fell back: 1 q4_K -> f16 11 q4_K -> q5_0 1 q6_K -> f16 1 q6_K -> q8_0" --
         ${LOOM_BIN} quantize ${LOOM_FIXTURES}/qwen2-tiny ${LOOM_Q_TMP}/fallback.gguf --type q4_k_m)
# The agreement criteria can fail: an impossible KL bound, and a q4_0 model held to 100% top-1.
add_test(NAME check_q_detects_kl COMMAND ${LOOM_EXPECT} --rc 1 --match "mean KL: [^\\n]*  FAIL" --
         ${LOOM_BIN} check -m ${LOOM_Q_TMP}/llama-tiny-q8_0.gguf --reference ${LOOM_Q_REF_llama-tiny} --max-kl 1e-9 --device cpu)
add_test(NAME check_q_detects_top1 COMMAND ${LOOM_EXPECT} --rc 1 --match "top-1 agreement: [^\\n]*  FAIL" --
         ${LOOM_BIN} check -m ${LOOM_Q_TMP}/llama-tiny-q4_0.gguf --reference ${LOOM_Q_REF_llama-tiny} --min-top1 100 --device cpu)
set_tests_properties(check_q_detects_kl PROPERTIES FIXTURES_REQUIRED q_llama-tiny_q8_0)
set_tests_properties(check_q_detects_top1 PROPERTIES FIXTURES_REQUIRED q_llama-tiny_q4_0)
# usage errors exit 2; a bad input names the file
# The thread count never changes the file (rows are quantised independently; formats/quantize.c).
# Under a sanitizer one preset, the K mix (Q4_K and Q6_K tensors in one file): the row sharing that
# -t 1 / 3 / 256 exercise (formats/quantize.c) does not depend on the block type, every preset's
# quantiser runs threaded (-t 0: one per CPU) under ASan in its quantize_llama-wide_* test already, and
# the byte comparison of all twelve is the release build's (22.0 ASan CPU-s with twelve, 8.0 with
# three until session 16: q4_0 and iq4_xs too; docs/reliability.md "CI").
set(_qt_presets "")
set(_qt_n 12)
if(LOOM_SANITIZE)
  set(_qt_presets q4_k_m)
  set(_qt_n 1)
endif()
add_test(NAME quantize_threads COMMAND ${LOOM_EXPECT} --match "PASS: ${_qt_n} presets" --
         sh ${CMAKE_CURRENT_SOURCE_DIR}/scripts/quantize_threads.sh ${LOOM_BIN} ${LOOM_FIXTURES}/llama-wide
         ${LOOM_Q_TMP}/threads ${_qt_presets})
add_test(NAME quantize_bad_type COMMAND sh -c "${LOOM_BIN} quantize a b --type q3_x; test $? -eq 2")
add_test(NAME quantize_missing COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/scripts/expect_error.sh "no-such.gguf"
         ${LOOM_BIN} quantize ${LOOM_Q_TMP}/no-such.gguf ${LOOM_Q_TMP}/x.gguf --type q8_0)

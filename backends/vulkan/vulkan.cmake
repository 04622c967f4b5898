# The Vulkan backend: compiles shaders/*.comp to SPIR-V at build time and embeds the blobs in a
# generated C file, so nothing is read from disk at run time. Included by the top-level
# CMakeLists.txt when LOOM_VULKAN is ON; without Vulkan or glslangValidator the build goes on
# without the backend.

find_package(Vulkan QUIET)
find_program(LOOM_GLSLANG glslangValidator)
if(NOT Vulkan_FOUND OR NOT LOOM_GLSLANG)
  message(STATUS "loom: Vulkan headers/loader or glslangValidator not found; building without Vulkan")
  return()
endif()
message(STATUS "loom: Vulkan backend on (${Vulkan_LIBRARIES}, ${LOOM_GLSLANG})")

set(LOOM_VK_DIR ${CMAKE_SOURCE_DIR}/backends/vulkan)
set(LOOM_SHADER_DIR ${CMAKE_SOURCE_DIR}/shaders)
set(LOOM_SPV_DIR ${CMAKE_BINARY_DIR}/spv)
file(MAKE_DIRECTORY ${LOOM_SPV_DIR})
file(GLOB LOOM_SHADER_HEADERS CONFIGURE_DEPENDS ${LOOM_SHADER_DIR}/*.glsl)

# The shader variants: NAME SOURCE [DEFINES...]. The C side refers to them by NAME through the
# generated enum (LOOM_SPV_<NAME>), so adding one here needs no table edit there.
set(LOOM_VK_VARIANTS
  "embed_f32|embed.comp|W_F32"
  "embed_f16|embed.comp|W_F16"
  "embed_f16s|embed.comp|W_F16S"
  "embed_bf16|embed.comp|W_BF16"
  "matmul_f32|matmul.comp|W_F32"
  "matmul_f16|matmul.comp|W_F16"
  "matmul_f16s|matmul.comp|W_F16S"
  "matmul_bf16|matmul.comp|W_BF16"
  "matmul_big_f32|matmul.comp|W_F32|BIG"
  "matmul_big_f16|matmul.comp|W_F16|BIG"
  "matmul_big_f16s|matmul.comp|W_F16S|BIG"
  "matmul_big_bf16|matmul.comp|W_BF16|BIG"
  "matvec_f32|matvec.comp|W_F32"
  "matvec_f16|matvec.comp|W_F16"
  "matvec_f16s|matvec.comp|W_F16S"
  "matvec_bf16|matvec.comp|W_BF16"
  # block-quantised weights: wquant.glsl through wload.glsl; prefill tiles in matmul_q.comp; the
  # decode GEMVs a block at a time (matvec_qb.comp) and on 8-bit x (matvec_dp.comp, after quantx.comp;
  # matvec_dpi_*: integer dot products, matvec_dp_*: without; matvec_dp(i)e_*: with the epilogue that
  # writes the output quantised for the next one, LOOM_VK_QX_FOLD; matvec_dp(i)gu_*: gate and up of a
  # SWIGLU in one dispatch, writing silu(gate) * up quantised)
  "embed_q8_0|embed.comp|W_Q8_0"
  "matvec_q8_0|matvec.comp|W_Q8_0"
  "matvec_qb_q8_0|matvec_qb.comp|W_Q8_0"
  "matvec_dp_q8_0|matvec_dp.comp|W_Q8_0"
  "matvec_dpi_q8_0|matvec_dp.comp|W_Q8_0|DP_IDOT"
  "matvec_dpe_q8_0|matvec_dp.comp|W_Q8_0|DP_EPI"
  "matvec_dpie_q8_0|matvec_dp.comp|W_Q8_0|DP_IDOT|DP_EPI"
  "matvec_dpgu_q8_0|matvec_dp.comp|W_Q8_0|DP_EPI|DP_GU"
  "matvec_dpigu_q8_0|matvec_dp.comp|W_Q8_0|DP_IDOT|DP_EPI|DP_GU"
  "matmul_q8_0|matmul_q.comp|W_Q8_0"
  "matmul_big_q8_0|matmul_q.comp|W_Q8_0|BIG"
  "embed_q4_0|embed.comp|W_Q4_0"
  "matvec_q4_0|matvec.comp|W_Q4_0"
  "matvec_qb_q4_0|matvec_qb.comp|W_Q4_0"
  "matvec_dp_q4_0|matvec_dp.comp|W_Q4_0"
  "matvec_dpi_q4_0|matvec_dp.comp|W_Q4_0|DP_IDOT"
  "matvec_dpe_q4_0|matvec_dp.comp|W_Q4_0|DP_EPI"
  "matvec_dpie_q4_0|matvec_dp.comp|W_Q4_0|DP_IDOT|DP_EPI"
  "matvec_dpgu_q4_0|matvec_dp.comp|W_Q4_0|DP_EPI|DP_GU"
  "matvec_dpigu_q4_0|matvec_dp.comp|W_Q4_0|DP_IDOT|DP_EPI|DP_GU"
  "matmul_q4_0|matmul_q.comp|W_Q4_0"
  "matmul_big_q4_0|matmul_q.comp|W_Q4_0|BIG"
  "embed_q4_k|embed.comp|W_Q4_K"
  "matvec_q4_k|matvec.comp|W_Q4_K"
  "matvec_qb_q4_k|matvec_qb.comp|W_Q4_K"
  "matvec_dp_q4_k|matvec_dp.comp|W_Q4_K"
  "matvec_dpi_q4_k|matvec_dp.comp|W_Q4_K|DP_IDOT"
  "matvec_dpe_q4_k|matvec_dp.comp|W_Q4_K|DP_EPI"
  "matvec_dpie_q4_k|matvec_dp.comp|W_Q4_K|DP_IDOT|DP_EPI"
  "matvec_dpgu_q4_k|matvec_dp.comp|W_Q4_K|DP_EPI|DP_GU"
  "matvec_dpigu_q4_k|matvec_dp.comp|W_Q4_K|DP_IDOT|DP_EPI|DP_GU"
  "matmul_q4_k|matmul_q.comp|W_Q4_K"
  "matmul_big_q4_k|matmul_q.comp|W_Q4_K|BIG"
  "embed_q6_k|embed.comp|W_Q6_K"
  "matvec_q6_k|matvec.comp|W_Q6_K"
  "matvec_qb_q6_k|matvec_qb.comp|W_Q6_K"
  "matvec_dp_q6_k|matvec_dp.comp|W_Q6_K"
  "matvec_dpi_q6_k|matvec_dp.comp|W_Q6_K|DP_IDOT"
  "matvec_dpe_q6_k|matvec_dp.comp|W_Q6_K|DP_EPI"
  "matvec_dpie_q6_k|matvec_dp.comp|W_Q6_K|DP_IDOT|DP_EPI"
  "matvec_dpgu_q6_k|matvec_dp.comp|W_Q6_K|DP_EPI|DP_GU"
  "matvec_dpigu_q6_k|matvec_dp.comp|W_Q6_K|DP_IDOT|DP_EPI|DP_GU"
  "matmul_q6_k|matmul_q.comp|W_Q6_K"
  "matmul_big_q6_k|matmul_q.comp|W_Q6_K|BIG"
  "embed_q4_1|embed.comp|W_Q4_1"
  "matvec_q4_1|matvec.comp|W_Q4_1"
  "matvec_qb_q4_1|matvec_qb.comp|W_Q4_1"
  "matvec_dp_q4_1|matvec_dp.comp|W_Q4_1"
  "matvec_dpi_q4_1|matvec_dp.comp|W_Q4_1|DP_IDOT"
  "matvec_dpe_q4_1|matvec_dp.comp|W_Q4_1|DP_EPI"
  "matvec_dpie_q4_1|matvec_dp.comp|W_Q4_1|DP_IDOT|DP_EPI"
  "matvec_dpgu_q4_1|matvec_dp.comp|W_Q4_1|DP_EPI|DP_GU"
  "matvec_dpigu_q4_1|matvec_dp.comp|W_Q4_1|DP_IDOT|DP_EPI|DP_GU"
  "matmul_q4_1|matmul_q.comp|W_Q4_1"
  "matmul_big_q4_1|matmul_q.comp|W_Q4_1|BIG"
  "embed_q5_0|embed.comp|W_Q5_0"
  "matvec_q5_0|matvec.comp|W_Q5_0"
  "matvec_qb_q5_0|matvec_qb.comp|W_Q5_0"
  "matvec_dp_q5_0|matvec_dp.comp|W_Q5_0"
  "matvec_dpi_q5_0|matvec_dp.comp|W_Q5_0|DP_IDOT"
  "matvec_dpe_q5_0|matvec_dp.comp|W_Q5_0|DP_EPI"
  "matvec_dpie_q5_0|matvec_dp.comp|W_Q5_0|DP_IDOT|DP_EPI"
  "matvec_dpgu_q5_0|matvec_dp.comp|W_Q5_0|DP_EPI|DP_GU"
  "matvec_dpigu_q5_0|matvec_dp.comp|W_Q5_0|DP_IDOT|DP_EPI|DP_GU"
  "matmul_q5_0|matmul_q.comp|W_Q5_0"
  "matmul_big_q5_0|matmul_q.comp|W_Q5_0|BIG"
  "embed_q5_1|embed.comp|W_Q5_1"
  "matvec_q5_1|matvec.comp|W_Q5_1"
  "matvec_qb_q5_1|matvec_qb.comp|W_Q5_1"
  "matvec_dp_q5_1|matvec_dp.comp|W_Q5_1"
  "matvec_dpi_q5_1|matvec_dp.comp|W_Q5_1|DP_IDOT"
  "matvec_dpe_q5_1|matvec_dp.comp|W_Q5_1|DP_EPI"
  "matvec_dpie_q5_1|matvec_dp.comp|W_Q5_1|DP_IDOT|DP_EPI"
  "matvec_dpgu_q5_1|matvec_dp.comp|W_Q5_1|DP_EPI|DP_GU"
  "matvec_dpigu_q5_1|matvec_dp.comp|W_Q5_1|DP_IDOT|DP_EPI|DP_GU"
  "matmul_q5_1|matmul_q.comp|W_Q5_1"
  "matmul_big_q5_1|matmul_q.comp|W_Q5_1|BIG"
  "embed_q2_k|embed.comp|W_Q2_K"
  "matvec_q2_k|matvec.comp|W_Q2_K"
  "matvec_qb_q2_k|matvec_qb.comp|W_Q2_K"
  "matvec_dp_q2_k|matvec_dp.comp|W_Q2_K"
  "matvec_dpi_q2_k|matvec_dp.comp|W_Q2_K|DP_IDOT"
  "matvec_dpe_q2_k|matvec_dp.comp|W_Q2_K|DP_EPI"
  "matvec_dpie_q2_k|matvec_dp.comp|W_Q2_K|DP_IDOT|DP_EPI"
  "matvec_dpgu_q2_k|matvec_dp.comp|W_Q2_K|DP_EPI|DP_GU"
  "matvec_dpigu_q2_k|matvec_dp.comp|W_Q2_K|DP_IDOT|DP_EPI|DP_GU"
  "matmul_q2_k|matmul_q.comp|W_Q2_K"
  "matmul_big_q2_k|matmul_q.comp|W_Q2_K|BIG"
  "embed_q3_k|embed.comp|W_Q3_K"
  "matvec_q3_k|matvec.comp|W_Q3_K"
  "matvec_qb_q3_k|matvec_qb.comp|W_Q3_K"
  "matvec_dp_q3_k|matvec_dp.comp|W_Q3_K"
  "matvec_dpi_q3_k|matvec_dp.comp|W_Q3_K|DP_IDOT"
  "matvec_dpe_q3_k|matvec_dp.comp|W_Q3_K|DP_EPI"
  "matvec_dpie_q3_k|matvec_dp.comp|W_Q3_K|DP_IDOT|DP_EPI"
  "matvec_dpgu_q3_k|matvec_dp.comp|W_Q3_K|DP_EPI|DP_GU"
  "matvec_dpigu_q3_k|matvec_dp.comp|W_Q3_K|DP_IDOT|DP_EPI|DP_GU"
  "matmul_q3_k|matmul_q.comp|W_Q3_K"
  "matmul_big_q3_k|matmul_q.comp|W_Q3_K|BIG"
  "embed_q5_k|embed.comp|W_Q5_K"
  "matvec_q5_k|matvec.comp|W_Q5_K"
  "matvec_qb_q5_k|matvec_qb.comp|W_Q5_K"
  "matvec_dp_q5_k|matvec_dp.comp|W_Q5_K"
  "matvec_dpi_q5_k|matvec_dp.comp|W_Q5_K|DP_IDOT"
  "matvec_dpe_q5_k|matvec_dp.comp|W_Q5_K|DP_EPI"
  "matvec_dpie_q5_k|matvec_dp.comp|W_Q5_K|DP_IDOT|DP_EPI"
  "matvec_dpgu_q5_k|matvec_dp.comp|W_Q5_K|DP_EPI|DP_GU"
  "matvec_dpigu_q5_k|matvec_dp.comp|W_Q5_K|DP_IDOT|DP_EPI|DP_GU"
  "matmul_q5_k|matmul_q.comp|W_Q5_K"
  "matmul_big_q5_k|matmul_q.comp|W_Q5_K|BIG"
  "embed_iq4_nl|embed.comp|W_IQ4_NL"
  "matvec_iq4_nl|matvec.comp|W_IQ4_NL"
  "matvec_qb_iq4_nl|matvec_qb.comp|W_IQ4_NL"
  "matvec_dp_iq4_nl|matvec_dp.comp|W_IQ4_NL"
  "matvec_dpi_iq4_nl|matvec_dp.comp|W_IQ4_NL|DP_IDOT"
  "matvec_dpe_iq4_nl|matvec_dp.comp|W_IQ4_NL|DP_EPI"
  "matvec_dpie_iq4_nl|matvec_dp.comp|W_IQ4_NL|DP_IDOT|DP_EPI"
  "matvec_dpgu_iq4_nl|matvec_dp.comp|W_IQ4_NL|DP_EPI|DP_GU"
  "matvec_dpigu_iq4_nl|matvec_dp.comp|W_IQ4_NL|DP_IDOT|DP_EPI|DP_GU"
  "matmul_iq4_nl|matmul_q.comp|W_IQ4_NL"
  "matmul_big_iq4_nl|matmul_q.comp|W_IQ4_NL|BIG"
  "embed_iq4_xs|embed.comp|W_IQ4_XS"
  "matvec_iq4_xs|matvec.comp|W_IQ4_XS"
  "matvec_qb_iq4_xs|matvec_qb.comp|W_IQ4_XS"
  "matvec_dp_iq4_xs|matvec_dp.comp|W_IQ4_XS"
  "matvec_dpi_iq4_xs|matvec_dp.comp|W_IQ4_XS|DP_IDOT"
  "matvec_dpe_iq4_xs|matvec_dp.comp|W_IQ4_XS|DP_EPI"
  "matvec_dpie_iq4_xs|matvec_dp.comp|W_IQ4_XS|DP_IDOT|DP_EPI"
  "matvec_dpgu_iq4_xs|matvec_dp.comp|W_IQ4_XS|DP_EPI|DP_GU"
  "matvec_dpigu_iq4_xs|matvec_dp.comp|W_IQ4_XS|DP_IDOT|DP_EPI|DP_GU"
  "matmul_iq4_xs|matmul_q.comp|W_IQ4_XS"
  "matmul_big_iq4_xs|matmul_q.comp|W_IQ4_XS|BIG"
  "quantx|quantx.comp"
  # LOOM_VK_CM_QTILE=1 without cooperative matrices: the tiled prefill with qtile.glsl's decoders
  # (their check on lavapipe; the tensor-core build of the same decoders is matmul_cmv_sg64q_* below)
  "matmul_qt_q8_0|matmul_q.comp|W_Q8_0|QTILE"
  "matmul_big_qt_q8_0|matmul_q.comp|W_Q8_0|QTILE|BIG"
  "matmul_qt_q4_0|matmul_q.comp|W_Q4_0|QTILE"
  "matmul_big_qt_q4_0|matmul_q.comp|W_Q4_0|QTILE|BIG"
  "matmul_qt_q4_k|matmul_q.comp|W_Q4_K|QTILE"
  "matmul_big_qt_q4_k|matmul_q.comp|W_Q4_K|QTILE|BIG"
  "matmul_qt_q6_k|matmul_q.comp|W_Q6_K|QTILE"
  "matmul_big_qt_q6_k|matmul_q.comp|W_Q6_K|QTILE|BIG"
  "matmul_qt_q4_1|matmul_q.comp|W_Q4_1|QTILE"
  "matmul_big_qt_q4_1|matmul_q.comp|W_Q4_1|QTILE|BIG"
  "matmul_qt_q5_0|matmul_q.comp|W_Q5_0|QTILE"
  "matmul_big_qt_q5_0|matmul_q.comp|W_Q5_0|QTILE|BIG"
  "matmul_qt_q5_1|matmul_q.comp|W_Q5_1|QTILE"
  "matmul_big_qt_q5_1|matmul_q.comp|W_Q5_1|QTILE|BIG"
  "matmul_qt_q2_k|matmul_q.comp|W_Q2_K|QTILE"
  "matmul_big_qt_q2_k|matmul_q.comp|W_Q2_K|QTILE|BIG"
  "matmul_qt_q3_k|matmul_q.comp|W_Q3_K|QTILE"
  "matmul_big_qt_q3_k|matmul_q.comp|W_Q3_K|QTILE|BIG"
  "matmul_qt_q5_k|matmul_q.comp|W_Q5_K|QTILE"
  "matmul_big_qt_q5_k|matmul_q.comp|W_Q5_K|QTILE|BIG"
  "matmul_qt_iq4_nl|matmul_q.comp|W_IQ4_NL|QTILE"
  "matmul_big_qt_iq4_nl|matmul_q.comp|W_IQ4_NL|QTILE|BIG"
  "matmul_qt_iq4_xs|matmul_q.comp|W_IQ4_XS|QTILE"
  "matmul_big_qt_iq4_xs|matmul_q.comp|W_IQ4_XS|QTILE|BIG"
  "eltwise|eltwise.comp"
  "rmsnorm|rmsnorm.comp"
  "softmax|softmax.comp"
  "rope|rope.comp"
  "kv_store|kv_store.comp"
  "attention|attention.comp"
  "attention_c|attention.comp|ACOMB"
  "attention_cq|attention.comp|ACOMB|QEPI"
  "attention_nosg|attention.comp|NO_SUBGROUP"
  "attention_rkv|attention.comp|RKV"
  "attention_c_rkv|attention.comp|ACOMB|RKV"
  "attention_cq_rkv|attention.comp|ACOMB|QEPI|RKV"
  "attn_combine|attn_combine.comp"
  "attn_combine_q|attn_combine.comp|QEPI"
  "attn_fa|attn_fa.comp"
  "permute|permute.comp"
  "moe_route|moe_route.comp"
  "moe_group|moe_group.comp"
  "moe_sum|moe_sum.comp"
  # MOE's expert products (vk_record.c rec_moe): the decode GEMV (matvec.comp MOE: the expert id read
  # from the routes, then a dense row's inner loop) and the grouped prefill tiles (matmul_q.comp MOE:
  # rows gathered per expert through moe_group.comp's order); f16 tiles read uint words as matmul.comp
  "matvec_moe_f32|matvec.comp|W_F32|MOE"
  "matvec_moe_f16|matvec.comp|W_F16|MOE"
  "matvec_moe_f16s|matvec.comp|W_F16S|MOE"
  "matvec_moe_bf16|matvec.comp|W_BF16|MOE"
  "matvec_moe_q8_0|matvec.comp|W_Q8_0|MOE"
  "matvec_moe_q4_0|matvec.comp|W_Q4_0|MOE"
  "matvec_moe_q4_k|matvec.comp|W_Q4_K|MOE"
  "matvec_moe_q6_k|matvec.comp|W_Q6_K|MOE"
  "matvec_moe_q4_1|matvec.comp|W_Q4_1|MOE"
  "matvec_moe_q5_0|matvec.comp|W_Q5_0|MOE"
  "matvec_moe_q5_1|matvec.comp|W_Q5_1|MOE"
  "matvec_moe_q2_k|matvec.comp|W_Q2_K|MOE"
  "matvec_moe_q3_k|matvec.comp|W_Q3_K|MOE"
  "matvec_moe_q5_k|matvec.comp|W_Q5_K|MOE"
  "matvec_moe_iq4_nl|matvec.comp|W_IQ4_NL|MOE"
  "matvec_moe_iq4_xs|matvec.comp|W_IQ4_XS|MOE"
  "matmul_moe_f32|matmul_q.comp|W_F32|MOE"
  "matmul_moe_f16|matmul_q.comp|W_F16|MOE"
  "matmul_moe_bf16|matmul_q.comp|W_BF16|MOE"
  "matmul_moe_q8_0|matmul_q.comp|W_Q8_0|MOE"
  "matmul_moe_q4_0|matmul_q.comp|W_Q4_0|MOE"
  "matmul_moe_q4_k|matmul_q.comp|W_Q4_K|MOE"
  "matmul_moe_q6_k|matmul_q.comp|W_Q6_K|MOE"
  "matmul_moe_q4_1|matmul_q.comp|W_Q4_1|MOE"
  "matmul_moe_q5_0|matmul_q.comp|W_Q5_0|MOE"
  "matmul_moe_q5_1|matmul_q.comp|W_Q5_1|MOE"
  "matmul_moe_q2_k|matmul_q.comp|W_Q2_K|MOE"
  "matmul_moe_q3_k|matmul_q.comp|W_Q3_K|MOE"
  "matmul_moe_q5_k|matmul_q.comp|W_Q5_K|MOE"
  "matmul_moe_iq4_nl|matmul_q.comp|W_IQ4_NL|MOE"
  "matmul_moe_iq4_xs|matmul_q.comp|W_IQ4_XS|MOE"
  "moe_mm_f32|moe_mm.comp|W_F32"
  "moe_mm_f16|moe_mm.comp|W_F16"
  "moe_mm_f16s|moe_mm.comp|W_F16S"
  "moe_mm_bf16|moe_mm.comp|W_BF16"
  "moe_mm_q8_0|moe_mm.comp|W_Q8_0"
  "moe_mm_q4_0|moe_mm.comp|W_Q4_0"
  "moe_mm_q4_k|moe_mm.comp|W_Q4_K"
  "moe_mm_q6_k|moe_mm.comp|W_Q6_K"
  "moe_mm_q4_1|moe_mm.comp|W_Q4_1"
  "moe_mm_q5_0|moe_mm.comp|W_Q5_0"
  "moe_mm_q5_1|moe_mm.comp|W_Q5_1"
  "moe_mm_q2_k|moe_mm.comp|W_Q2_K"
  "moe_mm_q3_k|moe_mm.comp|W_Q3_K"
  "moe_mm_q5_k|moe_mm.comp|W_Q5_K"
  "moe_mm_iq4_nl|moe_mm.comp|W_IQ4_NL"
  "moe_mm_iq4_xs|moe_mm.comp|W_IQ4_XS"
)

# Cooperative-matrix (tensor-core) shaders need a glslang that knows GL_KHR_cooperative_matrix
# (15.x; Debian 12's 12.0 does not: tools/build-glslang.sh builds one, passed as
# -DLOOM_GLSLANG=.../glslangValidator). Probe it once per glslang; without it the build is as
# before, minus the coopmat path (LOOM_VK_COOPMAT undefined). -DLOOM_VK_COOPMAT=OFF skips it.
option(LOOM_VK_COOPMAT "cooperative-matrix matmul shaders when glslang can compile them" ON)
# loom_glslang_probe(PREFIX EXTENSION TARGET_ENV SOURCE): whether ${LOOM_GLSLANG} compiles the
# shader SOURCE (the probe of EXTENSION) for --target-env TARGET_ENV, into the cache as PREFIX_OK
# (ON/OFF); PREFIX_PROBED keeps the glslang it ran with, so it runs again only for another one.
function(loom_glslang_probe prefix ext env src)
  if(DEFINED ${prefix}_OK AND "${${prefix}_PROBED}" STREQUAL "${LOOM_GLSLANG}")
    return()
  endif()
  set(dir ${CMAKE_BINARY_DIR}/coopmat_probe)
  file(MAKE_DIRECTORY ${dir})
  file(WRITE ${dir}/${prefix}.comp "${src}")
  execute_process(COMMAND ${LOOM_GLSLANG} -V --target-env ${env} --quiet -o ${dir}/${prefix}.spv ${dir}/${prefix}.comp
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(rc EQUAL 0)
    set(${prefix}_OK ON CACHE INTERNAL "glslang compiles ${ext}")
  else()
    set(${prefix}_OK OFF CACHE INTERNAL "glslang compiles ${ext}")
  endif()
  set(${prefix}_PROBED "${LOOM_GLSLANG}" CACHE INTERNAL "glslang the ${ext} probe ran with")
endfunction()

set(LOOM_VK_HAVE_COOPMAT OFF)
set(LOOM_VK_HAVE_CM2 OFF)
if(LOOM_VK_COOPMAT)
  loom_glslang_probe(LOOM_GLSLANG_COOPMAT GL_KHR_cooperative_matrix vulkan1.2 "#version 450
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
layout(local_size_x = 32) in;
layout(std430, binding = 0) buffer B { float16_t h[]; float f[]; };
shared float16_t s[256];
void main() {
    coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseA> a;
    coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseB> b;
    coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator> c =
        coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator>(0.0);
    coopMatLoad(a, s, 0, 16, gl_CooperativeMatrixLayoutRowMajor);
    coopMatLoad(b, s, 0, 16, gl_CooperativeMatrixLayoutColumnMajor);
    c = coopMatMulAdd(a, b, c);
}
")
  if(LOOM_GLSLANG_COOPMAT_OK)
    set(LOOM_VK_HAVE_COOPMAT ON)
    list(APPEND LOOM_VK_VARIANTS
      "matmul_cm_f16|matmul_cm.comp|W_F16"
      "matmul_cm_bf16|matmul_cm.comp|W_BF16"
      "matmul_cm_big_f16|matmul_cm.comp|W_F16|BIG"
      "matmul_cm_big_bf16|matmul_cm.comp|W_BF16|BIG"
      # LOOM_VK_CM_VARIANT's A/B variants (vk_record.c's cm_variants; matmul_cmv.comp), f16 x by tohalf.comp
      "matmul_cmv_sg64_f16|matmul_cmv.comp|W_F16|BM=128|BN=128|WROWS=2|WCOLS=2|STAGES=1"
      "matmul_cmv_sg64_bf16|matmul_cmv.comp|W_BF16|BM=128|BN=128|WROWS=2|WCOLS=2|STAGES=1"
      "matmul_cmv_sg64db_f16|matmul_cmv.comp|W_F16|BM=128|BN=128|WROWS=2|WCOLS=2|STAGES=2"
      "matmul_cmv_sg64db_bf16|matmul_cmv.comp|W_BF16|BM=128|BN=128|WROWS=2|WCOLS=2|STAGES=2"
      "matmul_cmv_sg64h_f16|matmul_cmv.comp|W_F16|BM=128|BN=128|WROWS=2|WCOLS=2|STAGES=2|XH"
      "matmul_cmv_sg64h_bf16|matmul_cmv.comp|W_BF16|BM=128|BN=128|WROWS=2|WCOLS=2|STAGES=2|XH"
      "matmul_cmv_n256h_f16|matmul_cmv.comp|W_F16|BM=128|BN=256|WROWS=2|WCOLS=4|STAGES=1|XH"
      "matmul_cmv_n256h_bf16|matmul_cmv.comp|W_BF16|BM=128|BN=256|WROWS=2|WCOLS=4|STAGES=1|XH"
      "matmul_cmv_m64h_f16|matmul_cmv.comp|W_F16|BM=64|BN=128|WROWS=2|WCOLS=2|STAGES=2|XH"
      "matmul_cmv_m64h_bf16|matmul_cmv.comp|W_BF16|BM=64|BN=128|WROWS=2|WCOLS=2|STAGES=2|XH"
      # session 11's A/B set (docs/vulkan-backend.md): BK = 64 (half the barriers per product) and/or
      # 8 subgroups of 64 x 32 on the 128 x 128 tile (twice the warps to hide latency, half the
      # accumulators each); k64h's f16 x keeps its prefetch registers at sg64's count
      "matmul_cmv_k64h_f16|matmul_cmv.comp|W_F16|BM=128|BN=128|BK=64|WROWS=2|WCOLS=2|STAGES=1|XH"
      "matmul_cmv_k64h_bf16|matmul_cmv.comp|W_BF16|BM=128|BN=128|BK=64|WROWS=2|WCOLS=2|STAGES=1|XH"
      "matmul_cmv_w8_f16|matmul_cmv.comp|W_F16|BM=128|BN=128|WROWS=2|WCOLS=4|STAGES=1"
      "matmul_cmv_w8_bf16|matmul_cmv.comp|W_BF16|BM=128|BN=128|WROWS=2|WCOLS=4|STAGES=1"
      "matmul_cmv_w8k64_f16|matmul_cmv.comp|W_F16|BM=128|BN=128|BK=64|WROWS=2|WCOLS=4|STAGES=1"
      "matmul_cmv_w8k64_bf16|matmul_cmv.comp|W_BF16|BM=128|BN=128|BK=64|WROWS=2|WCOLS=4|STAGES=1"
      "matmul_cmv_w8k64h_f16|matmul_cmv.comp|W_F16|BM=128|BN=128|BK=64|WROWS=2|WCOLS=4|STAGES=1|XH"
      "matmul_cmv_w8k64h_bf16|matmul_cmv.comp|W_BF16|BM=128|BN=128|BK=64|WROWS=2|WCOLS=4|STAGES=1|XH"
      "matmul_cmv_w8db_f16|matmul_cmv.comp|W_F16|BM=128|BN=128|WROWS=2|WCOLS=4|STAGES=2"
      "matmul_cmv_w8db_bf16|matmul_cmv.comp|W_BF16|BM=128|BN=128|WROWS=2|WCOLS=4|STAGES=2"
      # 256 x 128 (256 rows of x): each W tile, and a quantised one's decoding, serves twice the rows
      "matmul_cmv_m256_f16|matmul_cmv.comp|W_F16|BM=256|BN=128|WROWS=4|WCOLS=2|STAGES=1"
      "matmul_cmv_m256_bf16|matmul_cmv.comp|W_BF16|BM=256|BN=128|WROWS=4|WCOLS=2|STAGES=1"
      # LOOM_VK_CM_QTILE=1: sg64 with the W tile dequantised in place from the raw blocks (qtile.glsl)
      "matmul_cmv_sg64q_q8_0|matmul_cmv.comp|W_Q8_0|BM=128|BN=128|WROWS=2|WCOLS=2|STAGES=1"
      "matmul_cmv_sg64q_q4_0|matmul_cmv.comp|W_Q4_0|BM=128|BN=128|WROWS=2|WCOLS=2|STAGES=1"
      "matmul_cmv_sg64q_q4_k|matmul_cmv.comp|W_Q4_K|BM=128|BN=128|WROWS=2|WCOLS=2|STAGES=1"
      "matmul_cmv_sg64q_q6_k|matmul_cmv.comp|W_Q6_K|BM=128|BN=128|WROWS=2|WCOLS=2|STAGES=1"
      "matmul_cmv_sg64q_q4_1|matmul_cmv.comp|W_Q4_1|BM=128|BN=128|WROWS=2|WCOLS=2|STAGES=1"
      "matmul_cmv_sg64q_q5_0|matmul_cmv.comp|W_Q5_0|BM=128|BN=128|WROWS=2|WCOLS=2|STAGES=1"
      "matmul_cmv_sg64q_q5_1|matmul_cmv.comp|W_Q5_1|BM=128|BN=128|WROWS=2|WCOLS=2|STAGES=1"
      "matmul_cmv_sg64q_q2_k|matmul_cmv.comp|W_Q2_K|BM=128|BN=128|WROWS=2|WCOLS=2|STAGES=1"
      "matmul_cmv_sg64q_q3_k|matmul_cmv.comp|W_Q3_K|BM=128|BN=128|WROWS=2|WCOLS=2|STAGES=1"
      "matmul_cmv_sg64q_q5_k|matmul_cmv.comp|W_Q5_K|BM=128|BN=128|WROWS=2|WCOLS=2|STAGES=1"
      "matmul_cmv_sg64q_iq4_nl|matmul_cmv.comp|W_IQ4_NL|BM=128|BN=128|WROWS=2|WCOLS=2|STAGES=1"
      "matmul_cmv_sg64q_iq4_xs|matmul_cmv.comp|W_IQ4_XS|BM=128|BN=128|WROWS=2|WCOLS=2|STAGES=1"
      "tohalf|tohalf.comp"
      # prefill attention on cooperative matrices (LOOM_VK_FA, vk_record.c rec_attention), a build per head
      # dim; the s builds rescale O through shared memory (LOOM_VK_FA=cms), the p builds prefetch K/V (cmp), the p8
      # builds are those with 8 subgroups (cmp8, head dims <= 64)
      "attn_cm_h16|attn_cm.comp|HD=16"
      "attn_cm_h32|attn_cm.comp|HD=32"
      "attn_cm_h64|attn_cm.comp|HD=64"
      "attn_cm_h128|attn_cm.comp|HD=128"
      "attn_cm_h16s|attn_cm.comp|HD=16|ROWSCALE_SHARED"
      "attn_cm_h32s|attn_cm.comp|HD=32|ROWSCALE_SHARED"
      "attn_cm_h64s|attn_cm.comp|HD=64|ROWSCALE_SHARED"
      "attn_cm_h128s|attn_cm.comp|HD=128|ROWSCALE_SHARED"
      "attn_cm_h16p|attn_cm.comp|HD=16|PREFETCH"
      "attn_cm_h32p|attn_cm.comp|HD=32|PREFETCH"
      "attn_cm_h64p|attn_cm.comp|HD=64|PREFETCH"
      "attn_cm_h128p|attn_cm.comp|HD=128|PREFETCH"
      "attn_cm_h16p8|attn_cm.comp|HD=16|PREFETCH|NSG8"
      "attn_cm_h32p8|attn_cm.comp|HD=32|PREFETCH|NSG8"
      "attn_cm_h64p8|attn_cm.comp|HD=64|PREFETCH|NSG8"
      # block-quantised weights: to f16 in scratch (dequant.comp) for the f16 shaders above, or
      # dequantised in the tile loads (LOOM_VK_QCM=tiles, for comparison)
      "dequant_q8_0|dequant.comp|W_Q8_0"
      "dequant_q4_0|dequant.comp|W_Q4_0"
      "dequant_q4_k|dequant.comp|W_Q4_K"
      "dequant_q6_k|dequant.comp|W_Q6_K"
      "dequant_q4_1|dequant.comp|W_Q4_1"
      "dequant_q5_0|dequant.comp|W_Q5_0"
      "dequant_q5_1|dequant.comp|W_Q5_1"
      "dequant_q2_k|dequant.comp|W_Q2_K"
      "dequant_q3_k|dequant.comp|W_Q3_K"
      "dequant_q5_k|dequant.comp|W_Q5_K"
      "dequant_iq4_nl|dequant.comp|W_IQ4_NL"
      "dequant_iq4_xs|dequant.comp|W_IQ4_XS"
      "matmul_cm_q8_0|matmul_cm.comp|W_Q8_0"
      "matmul_cm_big_q8_0|matmul_cm.comp|W_Q8_0|BIG"
      "matmul_cm_q4_0|matmul_cm.comp|W_Q4_0"
      "matmul_cm_big_q4_0|matmul_cm.comp|W_Q4_0|BIG"
      "matmul_cm_q4_k|matmul_cm.comp|W_Q4_K"
      "matmul_cm_big_q4_k|matmul_cm.comp|W_Q4_K|BIG"
      "matmul_cm_q6_k|matmul_cm.comp|W_Q6_K"
      "matmul_cm_big_q6_k|matmul_cm.comp|W_Q6_K|BIG")
    # ... and the session-11 variants' in-tile builds for the block types of llama-7b's q4_0 / Q4_K_M /
    # q8_0 files (vk_record.c's cmv_q tables; the other types take their f16 copy on these variants)
    foreach(qv "k64h|BM=128|BK=64|WROWS=2|WCOLS=2|STAGES=1|XH" "w8|BM=128|BK=32|WROWS=2|WCOLS=4|STAGES=1"
               "w8k64|BM=128|BK=64|WROWS=2|WCOLS=4|STAGES=1" "w8k64h|BM=128|BK=64|WROWS=2|WCOLS=4|STAGES=1|XH"
               "w8db|BM=128|BK=32|WROWS=2|WCOLS=4|STAGES=2" "m256|BM=256|BK=32|WROWS=4|WCOLS=2|STAGES=1")
      string(FIND "${qv}" "|" qbar)
      string(SUBSTRING "${qv}" 0 ${qbar} qvn)
      string(SUBSTRING "${qv}" ${qbar} -1 qvd)
      foreach(t q8_0 q4_0 q4_k q6_k)
        string(TOUPPER ${t} tu)
        list(APPEND LOOM_VK_VARIANTS "matmul_cmv_${qvn}q_${t}|matmul_cmv.comp|W_${tu}|BN=128${qvd}")
      endforeach()
    endforeach()
    message(STATUS "loom: cooperative-matrix shaders on (${LOOM_GLSLANG} compiles GL_KHR_cooperative_matrix)")
    # VK_NV_cooperative_matrix2 (LOOM_VK_CM2; matmul_cm2.comp, SPIR-V 1.6 so --target-env vulkan1.3,
    # the ENV13 marker below): glslang 15.x compiles GL_NV_cooperative_matrix2 with decode functions.
    # Probed like the KHR shaders; without it LOOM_VK_CM2 is undefined and the knob says so.
    loom_glslang_probe(LOOM_GLSLANG_CM2 GL_NV_cooperative_matrix2 vulkan1.3 "#version 450
#extension GL_KHR_cooperative_matrix : require
#extension GL_NV_cooperative_matrix2 : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_EXT_shader_16bit_storage : require
#extension GL_EXT_shader_explicit_arithmetic_types_int32 : require
#extension GL_EXT_buffer_reference : require
layout(local_size_x = 256) in;
layout(std430, binding = 0) buffer B { uvec4 b[]; };
layout(buffer_reference, std430, buffer_reference_align = 2) buffer Blk { float16_t d; uint16_t q[8]; };
float16_t dec(const in Blk k, const in uint32_t bc[2], const in uint32_t ib[2]) { return k.d * float16_t(float(uint(k.q[ib[1] & 7u]))); }
void main() {
    tensorLayoutNV<2, gl_CooperativeMatrixClampModeConstantNV> t = createTensorLayoutNV(2, gl_CooperativeMatrixClampModeConstantNV);
    t = setTensorLayoutBlockSizeNV(t, 1, 32);
    t = setTensorLayoutDimensionNV(t, 100, 64);
    coopmat<float16_t, gl_ScopeWorkgroup, 32, 128, gl_MatrixUseB> m;
    coopMatLoadTensorNV(m, b, 0, sliceTensorLayoutNV(t, 0, 128, 0, 32), createTensorViewNV(2, false, 1, 0), dec);
}
")
    if(LOOM_GLSLANG_CM2_OK)
      set(LOOM_VK_HAVE_CM2 ON)
      # vk_cm2.c's cm2_vars: NAME|BM|BN|BK|WG|X (X: f32 x, XF32, or f16 x, XH), each for every
      # weight type the shader decodes
      foreach(cv "m128|128|128|32|256|XH" "n256|128|256|32|256|XH" "k64|128|128|64|256|XH" "k16|128|128|16|256|XH"
                 "w128|128|128|32|128|XH" "m128x|128|128|32|256|XF32" "n256x|128|256|32|256|XF32")
        string(REPLACE "|" ";" cvp "${cv}")
        list(GET cvp 0 cvn)
        list(GET cvp 1 cvm)
        list(GET cvp 2 cvb)
        list(GET cvp 3 cvk)
        list(GET cvp 4 cvw)
        list(GET cvp 5 cvx)
        foreach(t f16 bf16 q4_0 q8_0 q4_1 q5_0 q5_1 q4_k q5_k q6_k)
          string(TOUPPER ${t} tu)
          list(APPEND LOOM_VK_VARIANTS
               "matmul_cm2_${cvn}_${t}|matmul_cm2.comp|ENV13|W_${tu}|BM=${cvm}|BN=${cvb}|BK=${cvk}|WG=${cvw}|${cvx}")
        endforeach()
      endforeach()
      message(STATUS "loom: coopmat2 shaders on (${LOOM_GLSLANG} compiles GL_NV_cooperative_matrix2)")
    else()
      message(STATUS "loom: no coopmat2 shaders (${LOOM_GLSLANG} cannot compile GL_NV_cooperative_matrix2)")
    endif()
  else()
    message(STATUS "loom: no cooperative-matrix shaders (${LOOM_GLSLANG} cannot compile GL_KHR_cooperative_matrix; "
                   "tools/build-glslang.sh builds one that can)")
  endif()
endif()

# LOOM_SPV_CACHE=DIR: each shader's SPIR-V is kept in DIR under a key of everything its compile
# reads (spv_cached.sh), so builds sharing DIR compile it once (the Makefile gives `make asan` and
# `make test` one: 152 glslang runs, ~19 CPU-s on the 2-core box). Empty: glslang runs as usual.
set(LOOM_SPV_CACHE "" CACHE PATH "a folder of SPIR-V shared by builds (spv_cached.sh); empty: none")
set(LOOM_SPV_FILES)
set(LOOM_SPV_NAMES)
foreach(v ${LOOM_VK_VARIANTS})
  string(REPLACE "|" ";" parts "${v}")
  list(GET parts 0 name)
  list(GET parts 1 src)
  list(LENGTH parts np)
  set(defs)
  set(env vulkan1.2)
  if(np GREATER 2)
    list(SUBLIST parts 2 -1 dl)
    foreach(d ${dl})
      if(d STREQUAL "ENV13") # SPIR-V 1.6 (GL_NV_cooperative_matrix2)
        set(env vulkan1.3)
      else()
        list(APPEND defs -D${d})
      endif()
    endforeach()
  endif()
  set(out ${LOOM_SPV_DIR}/${name}.spv)
  set(glslang ${LOOM_GLSLANG})
  if(LOOM_SPV_CACHE)
    set(glslang sh ${LOOM_VK_DIR}/spv_cached.sh ${LOOM_SPV_CACHE} ${out} ${LOOM_SHADER_DIR} ${LOOM_GLSLANG})
  else()
    list(APPEND defs -o ${out})
  endif()
  add_custom_command(OUTPUT ${out}
    COMMAND ${glslang} -V --target-env ${env} --quiet -I${LOOM_SHADER_DIR} ${defs} ${LOOM_SHADER_DIR}/${src}
    DEPENDS ${LOOM_SHADER_DIR}/${src} ${LOOM_SHADER_HEADERS} ${LOOM_VK_DIR}/spv_cached.sh
    COMMENT "glslang ${name}"
    VERBATIM)
  list(APPEND LOOM_SPV_FILES ${out})
  list(APPEND LOOM_SPV_NAMES ${name})
endforeach()

set(LOOM_SPV_C ${CMAKE_BINARY_DIR}/loom_spirv.c)
set(LOOM_SPV_H ${CMAKE_BINARY_DIR}/loom_spirv.h)
string(REPLACE ";" "," LOOM_SPV_NAMES_ARG "${LOOM_SPV_NAMES}")
add_custom_command(OUTPUT ${LOOM_SPV_C} ${LOOM_SPV_H}
  COMMAND ${CMAKE_COMMAND} -DSPV_DIR=${LOOM_SPV_DIR} -DNAMES=${LOOM_SPV_NAMES_ARG}
          -DOUT_C=${LOOM_SPV_C} -DOUT_H=${LOOM_SPV_H} -P ${LOOM_VK_DIR}/embed_spirv.cmake
  DEPENDS ${LOOM_SPV_FILES} ${LOOM_VK_DIR}/embed_spirv.cmake ${LOOM_VK_DIR}/vulkan.cmake
  COMMENT "embedding SPIR-V"
  VERBATIM)
# loom_spirv.c names the .spv files (.incbin) rather than holding their words: its object is
# rebuilt when one of them changes, whatever the C file's text
set_source_files_properties(${LOOM_SPV_C} PROPERTIES OBJECT_DEPENDS "${LOOM_SPV_FILES}")

file(GLOB LOOM_VK_SOURCES CONFIGURE_DEPENDS ${LOOM_VK_DIR}/*.c)
target_sources(loom PRIVATE ${LOOM_VK_SOURCES} ${LOOM_SPV_C})
target_include_directories(loom PRIVATE ${CMAKE_BINARY_DIR})
target_compile_definitions(loom PUBLIC LOOM_HAVE_VULKAN)
if(LOOM_VK_HAVE_COOPMAT)
  target_compile_definitions(loom PUBLIC LOOM_VK_COOPMAT)
endif()
if(LOOM_VK_HAVE_CM2)
  target_compile_definitions(loom PUBLIC LOOM_VK_CM2)
endif()
target_link_libraries(loom PUBLIC Vulkan::Vulkan)

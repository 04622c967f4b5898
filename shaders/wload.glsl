// Weight loads for one binding (W_BINDING), whatever the weight's storage type:
//   W_F32   float
//   W_F16S  IEEE half through VK 16-bit storage (float16_t)
//   W_F16   IEEE half packed two per uint (devices without 16-bit storage)
//   W_BF16  bfloat16 packed two per uint (bf16 is the top half of an f32)
//   W_Q8_0, W_Q4_0, ... W_IQ4_XS  raw ggml blocks, dequantised in registers (wquant.glsl)
// wload(e) reads element e; wload8(e, lo, hi) reads elements e..e+7 (e a multiple of 8).
#ifndef W_BINDING
#define W_BINDING 2
#endif

#if defined(W_F32)
layout(std430, binding = W_BINDING) readonly buffer WB1 { float w1[]; };
layout(std430, binding = W_BINDING) readonly buffer WB4 { vec4 w4[]; };
float wload(uint e) { return w1[e]; }
void wload8(uint e, out vec4 lo, out vec4 hi) { lo = w4[e >> 2]; hi = w4[(e >> 2) + 1]; }
#elif defined(W_F16S)
#extension GL_EXT_shader_16bit_storage : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
layout(std430, binding = W_BINDING) readonly buffer WB1 { float16_t w1[]; };
layout(std430, binding = W_BINDING) readonly buffer WB8 { f16vec4 w8[]; };
float wload(uint e) { return float(w1[e]); }
void wload8(uint e, out vec4 lo, out vec4 hi) { lo = vec4(w8[e >> 2]); hi = vec4(w8[(e >> 2) + 1]); }
#elif defined(W_F16)
layout(std430, binding = W_BINDING) readonly buffer WB1 { uint w1[]; };
layout(std430, binding = W_BINDING) readonly buffer WB8 { uvec4 w8[]; };
float wload(uint e) { return unpackHalf2x16(w1[e >> 1])[e & 1u]; }
void wload8(uint e, out vec4 lo, out vec4 hi) {
    uvec4 v = w8[e >> 3];
    lo = vec4(unpackHalf2x16(v.x), unpackHalf2x16(v.y));
    hi = vec4(unpackHalf2x16(v.z), unpackHalf2x16(v.w));
}
#elif defined(W_BF16)
layout(std430, binding = W_BINDING) readonly buffer WB1 { uint w1[]; };
layout(std430, binding = W_BINDING) readonly buffer WB8 { uvec4 w8[]; };
float wload(uint e) {
    uint v = w1[e >> 1];
    return uintBitsToFloat((e & 1u) != 0u ? (v & 0xffff0000u) : (v << 16));
}
vec2 bf2(uint v) { return vec2(uintBitsToFloat(v << 16), uintBitsToFloat(v & 0xffff0000u)); }
void wload8(uint e, out vec4 lo, out vec4 hi) {
    uvec4 v = w8[e >> 3];
    lo = vec4(bf2(v.x), bf2(v.y));
    hi = vec4(bf2(v.z), bf2(v.w));
}
#elif defined(W_Q8_0) || defined(W_Q4_0) || defined(W_Q4_K) || defined(W_Q6_K) || defined(W_Q4_1) || \
    defined(W_Q5_0) || defined(W_Q5_1) || defined(W_Q2_K) || defined(W_Q3_K) || defined(W_Q5_K) ||   \
    defined(W_IQ4_NL) || defined(W_IQ4_XS)
#include "wquant.glsl"
#else
#error "define one of W_F32, W_F16S, W_F16, W_BF16 or a quantised type W_Q8_0 ... W_IQ4_XS (wquant.glsl)"
#endif

#version 450
#extension GL_GOOGLE_include_directive : require
// DEQUANT (a step of MATMUL, not a graph op): rows of a block-quantised W (wquant.glsl) to f16,
// packed two per uint, for the tensor-core prefill matmul (matmul_cm.comp, W_F16) to read.
// Dequantising inside the matmul's tile loads (matmul_cm.comp built with W_Q*) makes every
// workgroup repeat the byte-wise block reads; here each element is dequantised once per matmul
// with wide coalesced stores, and the matmul then runs at the f16 model's speed. The f16 copy
// lives in the graph's scratch buffer, one chunk of rows at a time (vk_record.c).
// u[0] = 8-element groups to convert (rows x K / 8); invocation g writes elements 8g..8g+7.
#include "common.glsl"
#define W_BINDING 2
#include "wload.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) writeonly buffer D { uvec4 d4[]; };

void main() {
    uint g = wg_linear() * 256u + gl_LocalInvocationID.x;
    if (g >= pc.u[0]) return;
    // OFF_D is in uints (the scratch binding's element); the region starts 16-byte aligned
    d4[(OFF_D >> 2) + g] = wload8_h(OFF_B + g * 8u);
}

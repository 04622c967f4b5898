#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
// TOHALF (a step of MATMUL, not a graph op): x (f32) to f16, packed two per uint, for the
// tensor-core prefill variants that read f16 x (matmul_cmv.comp built with XH): each element is
// converted once per matmul instead of once per workgroup column, and the matmul's x tile loads
// read half the bytes. Rounds as matmul_cm.comp's float16_t(x) does. The copy lives in the graph's
// scratch buffer (vk_record.c). u[0] = elements; invocation g writes elements 4g..4g+3 (past u[0]: 0).
#include "common.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) writeonly buffer D { uvec2 d2[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };

void main() {
    uint g = wg_linear() * 256u + gl_LocalInvocationID.x, n = pc.u[0], e = g * 4u;
    if (e >= n) return;
    vec4 v = vec4(0.0);
    v.x = x[OFF_A + e];
    if (e + 1u < n) v.y = x[OFF_A + e + 1u];
    if (e + 2u < n) v.z = x[OFF_A + e + 2u];
    if (e + 3u < n) v.w = x[OFF_A + e + 3u];
    f16vec4 h = f16vec4(v);
    // OFF_D is in uints (the scratch binding's element); the region starts 8-byte aligned
    d2[(OFF_D >> 1) + g] = uvec2(packFloat2x16(h.xy), packFloat2x16(h.zw));
}

#version 450
#extension GL_GOOGLE_include_directive : require
// Merges the per-split partials of attention.comp: out = sum_z e^(m_z - M) acc_z /
// sum_z e^(m_z - M) l_z over the splits that had keys (counted from pos[s] as attention.comp
// does). One workgroup per (h, s); the split weights are computed once, in parallel, into shared
// memory, then each invocation sums its dims over the splits with independent loads.
// QEPI (attn_combine_q; LOOM_VK_QX_FOLD, vk_record.c): the output is also written quantised for the
// next 8-bit-x GEMV (matvec_dp.comp), as quantx.comp would write it: a workgroup owns head h's hd
// (a multiple of 32) outputs of row s, so whole 32-blocks; binding 6 = the quantised x: q words, then
// the headers from u[10] (a vec4 index).
#include "common.glsl"
layout(local_size_x = 128) in;
layout(std430, binding = 0) writeonly buffer O { float o[]; };
#if defined(QEPI)
layout(std430, binding = 6) writeonly buffer QO { uvec4 qo[]; };
layout(std430, binding = 6) writeonly buffer HO { vec4 ho[]; };
#endif
layout(std430, binding = 4) readonly buffer P { int pos[]; };
layout(std430, binding = 5) readonly buffer Sc { float scratch[]; };
shared float wz[64], lz[64];
#if defined(QEPI)
shared float ov[256]; // this head's outputs
#endif

void main() {
    uint s = gl_WorkGroupID.y, h = gl_WorkGroupID.x, t = gl_LocalInvocationID.x;
    uint H = pc.u[1], hd = pc.u[3], C = pc.u[4], nsplit = pc.u[5];
    int p = pos[OFF_E + pc.u[8] + s]; // u[8]: pos within binding 4 (paged attention.comp)
    uint L = att_len(p, C);
    L -= att_lo(p, L); // keys in the window
    uint nz = L == 0u ? 0u : (L + att_chunk(L, nsplit) - 1u) / att_chunk(L, nsplit);
    uint base = OFF_S + (s * H + h) * nsplit * (hd + 2u);
    if (t < nz) {
        wz[t] = scratch[base + t * (hd + 2u)];
        lz[t] = scratch[base + t * (hd + 2u) + 1u];
    }
    barrier();
    float M = -3.0e38;
    for (uint z = 0u; z < nz; z++) M = max(M, wz[z]);
    barrier();
    if (t < nz) {
        float w = exp(wz[t] - M);
        wz[t] = w;
        lz[t] *= w;
    }
    barrier();
    float l = 0.0;
    for (uint z = 0u; z < nz; z++) l += lz[z];
    float inv = l > 0.0 ? 1.0 / l : 0.0;
    for (uint d = t; d < hd; d += 128u) {
        float a = 0.0;
        for (uint z = 0u; z < nz; z += 8u) { // eight loads in flight, then the sums
            float v[8];
            [[unroll]] for (uint b = 0u; b < 8u; b++)
                v[b] = z + b < nz ? scratch[base + (z + b) * (hd + 2u) + 2u + d] : 0.0;
            [[unroll]] for (uint b = 0u; b < 8u; b++) if (z + b < nz) a += wz[z + b] * v[b];
        }
        o[OFF_D + s * H * hd + h * hd + d] = a * inv;
#if defined(QEPI)
        ov[d] = a * inv;
#endif
    }
#if defined(QEPI)
    barrier();
    if (t >= hd / 32u) return;
    vec4 v[8];
    [[unroll]] for (uint j = 0u; j < 8u; j++)
        v[j] = vec4(ov[32u * t + 4u * j], ov[32u * t + 4u * j + 1u], ov[32u * t + 4u * j + 2u], ov[32u * t + 4u * j + 3u]);
    float ss = 0.0;
    [[unroll]] for (uint j = 0u; j < 8u; j++) ss += dot(v[j], v[j]);
    vec4 am = vec4(0.0);
    [[unroll]] for (uint j = 0u; j < 8u; j++) am = max(am, abs(v[j]));
    float amax = max(max(am.x, am.y), max(am.z, am.w));
    float dq = amax / 127.0, id = amax > 0.0 ? 127.0 / amax : 0.0;
    uint w[8];
    [[unroll]] for (uint j = 0u; j < 8u; j++) {
        ivec4 c = clamp(ivec4(roundEven(v[j] * id)), ivec4(-127), ivec4(127));
        uvec4 bb = uvec4(c) & 0xffu;
        w[j] = bb.x | (bb.y << 8) | (bb.z << 16) | (bb.w << 24);
    }
    uint i = s * (H * hd / 32u) + h * hd / 32u + t; // block of the [S, H * hd] output
    qo[OFF_Q + 2u * i] = uvec4(w[0], w[1], w[2], w[3]);
    qo[OFF_Q + 2u * i + 1u] = uvec4(w[4], w[5], w[6], w[7]);
    float x0 = dot(v[0] + v[1] + v[2] + v[3], vec4(1.0)), x1 = dot(v[4] + v[5] + v[6] + v[7], vec4(1.0));
    ho[OFF_Q + pc.u[10] + i] = vec4(dq, x0, x1, ss);
#endif
}

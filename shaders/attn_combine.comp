#version 450
#extension GL_GOOGLE_include_directive : require
// Merges the per-split partials of attention.comp: out = sum_z e^(m_z - M) acc_z /
// sum_z e^(m_z - M) l_z over the splits that had keys (counted from pos[s] as attention.comp
// does). One workgroup per (h, s); the split weights are computed once, in parallel, into shared
// memory, then each invocation sums its dims over the splits with independent loads.
#include "common.glsl"
layout(local_size_x = 128) in;
layout(std430, binding = 0) writeonly buffer O { float o[]; };
layout(std430, binding = 4) readonly buffer P { int pos[]; };
layout(std430, binding = 5) readonly buffer Sc { float scratch[]; };
shared float wz[64], lz[64];

void main() {
    uint s = gl_WorkGroupID.y, h = gl_WorkGroupID.x, t = gl_LocalInvocationID.x;
    uint H = pc.u[1], hd = pc.u[3], C = pc.u[4], nsplit = pc.u[5];
    int p = pos[OFF_E + pc.u[8] + s]; // u[8]: pos within binding 4 (paged attention.comp)
    uint L = p < 0 ? 0u : min(uint(p) + 1u, C);
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
    }
}

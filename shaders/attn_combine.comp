#version 450
#extension GL_GOOGLE_include_directive : require
// Merges the per-split partials of attention.comp: out = sum_z e^(m_z - M) acc_z /
// sum_z e^(m_z - M) l_z. One workgroup per (h, s); u[] as attention.comp.
#include "common.glsl"
layout(local_size_x = 128) in;
layout(std430, binding = 0) writeonly buffer O { float o[]; };
layout(std430, binding = 5) readonly buffer Sc { float scratch[]; };

void main() {
    uint s = gl_WorkGroupID.y, h = gl_WorkGroupID.x;
    uint H = pc.u[1], hd = pc.u[3], nsplit = pc.u[5];
    uint base = OFF_S + (s * H + h) * nsplit * (hd + 2u);
    float M = -3.0e38;
    for (uint z = 0u; z < nsplit; z++) M = max(M, scratch[base + z * (hd + 2u)]);
    float l = 0.0;
    for (uint z = 0u; z < nsplit; z++) {
        uint b = base + z * (hd + 2u);
        l += exp(scratch[b] - M) * scratch[b + 1u];
    }
    float inv = l > 0.0 ? 1.0 / l : 0.0;
    for (uint d = gl_LocalInvocationID.x; d < hd; d += 128u) {
        float a = 0.0;
        for (uint z = 0u; z < nsplit; z++) {
            uint b = base + z * (hd + 2u);
            a += exp(scratch[b] - M) * scratch[b + 2u + d];
        }
        o[OFF_D + s * H * hd + h * hd + d] = a * inv;
    }
}

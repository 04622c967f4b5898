#version 450
#extension GL_GOOGLE_include_directive : require
// KV_STORE: cache[pos[s], :] = rows[s, :]. u[0] = S, u[1] = W, u[2] = C (cache rows).
// Positions outside [0, C) are dropped (the session never sends them).
// With u[3] = 1 the rows are a ROPE's input and are rotated here (the ROPE dispatch is skipped):
// u[4] = heads, u[5] = head dim, u[6] = mode, u[7] = rotated dims, u[8] = has freq factors
// (binding 3); f[0] = theta, f[1] = position scale. Same arithmetic as rope.comp.
#include "common.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) buffer D { float cache[]; };
layout(std430, binding = 1) readonly buffer A { float rows[]; };
layout(std430, binding = 2) readonly buffer P { int pos[]; };
layout(std430, binding = 3) readonly buffer F { float ff[]; };

void main() {
    uint S = pc.u[0], W = pc.u[1];
    uint i = wg_linear() * 256u + gl_LocalInvocationID.x;
    if (i >= S * W) return;
    uint s = i / W, c = i - s * W;
    int p = pos[OFF_B + s];
    if (p < 0 || uint(p) >= pc.u[2]) return;
    float v = rows[OFF_A + i];
    uint hd = pc.u[5], rot = pc.u[7], dd = c % hd;
    if (pc.u[3] != 0u && dd < rot) {
        uint half_ = rot / 2u, base = i - dd;
        bool neox = pc.u[6] == 0u;
        uint t = neox ? dd % half_ : dd / 2u;
        bool second = neox ? dd >= half_ : (dd & 1u) != 0u;
        uint i0 = neox ? t : 2u * t, i1 = neox ? t + half_ : 2u * t + 1u;
        float inv = exp2(-2.0 * float(t) / float(rot) * log2(pc.f[0]));
        float ang = float(p) * pc.f[1] * inv;
        if (pc.u[8] != 0u) ang /= ff[OFF_C + t];
        float cs = cos(ang), sn = sin(ang);
        float x0 = rows[OFF_A + base + i0], x1 = rows[OFF_A + base + i1];
        v = second ? x0 * sn + x1 * cs : x0 * cs - x1 * sn;
    }
    cache[OFF_D + uint(p) * W + c] = v;
}

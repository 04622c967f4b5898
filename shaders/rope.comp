#version 450
#extension GL_GOOGLE_include_directive : require
// ROPE on x [S, H, hd]. u[0] = S, u[1] = H, u[2] = hd, u[3] = mode (0 NEOX, 1 NORM), u[4] = rot,
// u[5] = has freq factors; f[0] = theta, f[1] = position scale.
// One invocation per rotated pair (it reads both halves before writing, so in place is safe)
// plus one per pass-through dim d >= rot, which only copies.
#include "common.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) writeonly buffer D { float d[]; };
layout(std430, binding = 1) readonly buffer A { float a[]; };
layout(std430, binding = 2) readonly buffer P { int pos[]; };
layout(std430, binding = 3) readonly buffer F { float ff[]; };

void main() {
    uint S = pc.u[0], H = pc.u[1], hd = pc.u[2], mode = pc.u[3], rot = pc.u[4];
    uint half_ = rot / 2u, T = half_ + (hd - rot);
    uint i = wg_linear() * 256u + gl_LocalInvocationID.x;
    if (i >= S * H * T) return;
    uint t = i % T, sh = i / T, s = sh / H;
    uint base = sh * hd;
    if (t >= half_) {
        uint c = rot + (t - half_);
        d[OFF_D + base + c] = a[OFF_A + base + c];
        return;
    }
    float inv = exp2(-2.0 * float(t) / float(rot) * log2(pc.f[0]));
    float ang = float(pos[OFF_B + s]) * pc.f[1] * inv;
    if (pc.u[5] != 0u) ang /= ff[OFF_C + t];
    float c = cos(ang), sn = sin(ang);
    uint i0 = mode == 0u ? t : 2u * t, i1 = mode == 0u ? t + half_ : 2u * t + 1u;
    float x0 = a[OFF_A + base + i0], x1 = a[OFF_A + base + i1];
    d[OFF_D + base + i0] = x0 * c - x1 * sn;
    d[OFF_D + base + i1] = x0 * sn + x1 * c;
}

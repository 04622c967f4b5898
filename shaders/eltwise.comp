#version 450
#extension GL_GOOGLE_include_directive : require
// Element-wise ops. u[0] = op (0 ADD, 1 MUL, 2 SCALE, 3 SILU, 4 SWIGLU, 5 SUM, 6 GELU, 7 GEGLU,
// 8 SOFTCAP), u[1] = n, u[2] = length of b (b broadcasts over rows when shorter than n),
// f[0] = SCALE factor or SOFTCAP cap.
// SUM adds u[3] slabs of n elements of a (split-K partial products), plus b when u[4] is set.
// dst may alias a (in place): each invocation reads its element before writing it.
#include "common.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) writeonly buffer D { float d[]; };
layout(std430, binding = 1) readonly buffer A { float a[]; };
layout(std430, binding = 2) readonly buffer B { float b[]; };

void main() {
    uint op = pc.u[0], n = pc.u[1], nb = pc.u[2];
    uint i = wg_linear() * 256u + gl_LocalInvocationID.x;
    if (i >= n) return;
    float x = a[OFF_A + i], y;
    if (op == 0u) y = x + b[OFF_B + (nb == n ? i : i % nb)];
    else if (op == 1u) y = x * b[OFF_B + (nb == n ? i : i % nb)];
    else if (op == 2u) y = x * pc.f[0];
    else if (op == 3u) y = x / (1.0 + exp(-x));
    else if (op == 4u) y = x / (1.0 + exp(-x)) * b[OFF_B + i];
    else if (op == 6u) y = loom_gelu(x);
    else if (op == 7u) y = loom_gelu(x) * b[OFF_B + i];
    else if (op == 8u) y = pc.f[0] * loom_tanh(x / pc.f[0]);
    else {
        y = x;
        for (uint z = 1u; z < pc.u[3]; z++) y += a[OFF_A + z * n + i];
        if (pc.u[4] != 0u) y += b[OFF_B + i % nb];
    }
    d[OFF_D + i] = y;
}

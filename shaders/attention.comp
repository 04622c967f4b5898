#version 450
#extension GL_GOOGLE_include_directive : require
// ATTENTION, flash style: never holds more than one tile of scores. One workgroup per
// (query row s, head h, key split z). The cache length comes from pos[s] at run time, so a
// recorded command buffer stays valid as the cache grows.
// u[0] = S, u[1] = H, u[2] = Hkv, u[3] = hd, u[4] = C (cache rows), u[5] = splits; f[0] = scale.
// With one split the normalised result goes to out; otherwise (m, l, acc[hd]) partials go to
// scratch (binding 5) for attn_combine.comp.
#include "common.glsl"
#define WG 128
#define MAX_HD 256
layout(local_size_x = WG) in;
layout(std430, binding = 0) writeonly buffer O { float o[]; };
layout(std430, binding = 1) readonly buffer Q { float q[]; };
layout(std430, binding = 2) readonly buffer Kc { float kc[]; };
layout(std430, binding = 3) readonly buffer Vc { float vc[]; };
layout(std430, binding = 4) readonly buffer P { int pos[]; };
layout(std430, binding = 5) writeonly buffer Sc { float scratch[]; };

shared float qs[MAX_HD];
shared float sc[WG];
shared float red[WG];

void main() {
    uint s = gl_WorkGroupID.y, h = gl_WorkGroupID.x, z = gl_WorkGroupID.z;
    uint H = pc.u[1], Hkv = pc.u[2], hd = pc.u[3], C = pc.u[4], nsplit = pc.u[5];
    uint t = gl_LocalInvocationID.x;
    uint kvh = h / (H / Hkv);
    uint kvw = Hkv * hd;
    int p = pos[OFF_E + s];
    uint L = p < 0 ? 0u : min(uint(p) + 1u, C);
    uint chunk = (L + nsplit - 1u) / nsplit;
    uint j0 = min(z * chunk, L), j1 = min(j0 + chunk, L);

    for (uint d = t; d < hd; d += WG) qs[d] = q[OFF_A + s * H * hd + h * hd + d] * pc.f[0];
    barrier();

    float m = -3.0e38, l = 0.0;
    float acc0 = 0.0, acc1 = 0.0; // dims t and t + WG (hd <= 256)
    for (uint jb = j0; jb < j1; jb += WG) {
        uint j = jb + t;
        float score = -3.0e38;
        if (j < j1) {
            uint kb = OFF_B + j * kvw + kvh * hd;
            score = 0.0;
            for (uint d = 0u; d < hd; d++) score += qs[d] * kc[kb + d];
        }
        red[t] = score;
        barrier();
        [[unroll]] for (uint k = WG / 2u; k > 0u; k >>= 1) {
            if (t < k) red[t] = max(red[t], red[t + k]);
            barrier();
        }
        float mn = max(m, red[0]);
        float alpha = exp(m - mn);
        sc[t] = j < j1 ? exp(score - mn) : 0.0;
        barrier();
        uint nt = min(WG, j1 - jb);
        float s0 = 0.0, s1 = 0.0, ls = 0.0;
        for (uint jj = 0u; jj < nt; jj++) {
            float pj = sc[jj];
            uint vb = OFF_C + (jb + jj) * kvw + kvh * hd;
            ls += pj;
            if (t < hd) s0 += pj * vc[vb + t];
            if (t + WG < hd) s1 += pj * vc[vb + t + WG];
        }
        acc0 = acc0 * alpha + s0;
        acc1 = acc1 * alpha + s1;
        l = l * alpha + ls;
        m = mn;
        barrier();
    }
    if (nsplit == 1u) {
        float inv = l > 0.0 ? 1.0 / l : 0.0;
        uint ob = OFF_D + s * H * hd + h * hd;
        if (t < hd) o[ob + t] = acc0 * inv;
        if (t + WG < hd) o[ob + t + WG] = acc1 * inv;
    } else {
        uint sb = OFF_S + ((s * H + h) * nsplit + z) * (hd + 2u);
        if (t == 0u) { scratch[sb] = m; scratch[sb + 1u] = l; }
        if (t < hd) scratch[sb + 2u + t] = acc0;
        if (t + WG < hd) scratch[sb + 2u + t + WG] = acc1;
    }
}

#version 450
#extension GL_GOOGLE_include_directive : require
// ATTENTION for prefill (many query rows, one contiguous cache): flash attention on tiles.
// A workgroup takes one kv head, a group of GW query heads sharing it, and NR = 32 / GW
// consecutive query rows: R = 32 (row, head) slots whose queries stay in shared memory. Keys go
// by in tiles of BC = 32: the K tile and then the V tile pass through shared memory once for all
// slots (each K/V element is read from memory once per workgroup, not once per query row as in
// attention.comp), with an online softmax per slot. Each invocation owns 2 slots x 4 keys of a
// score tile and 2 slots x 4 vec4 of the output (dims 4 (kt + 8c)), so a shared read feeds 8 FMAs.
// Slot s sees keys [att_lo, min(pos[s] + 1, C)) as attention.comp (the cache length from pos[s] at
// run time; att_lo > 0 with a sliding window), scores soft-capped when f[1] > 0. The host takes this path for S >= 64 rows, no block tables, head dim <= 128 and a
// multiple of 4, and vec4-aligned q, K and V (rec_attention); attention.comp does the rest.
// Bindings and push constants as attention.comp (u[0] = S, u[1] = H, u[2] = Hkv, u[4] = C,
// u[8] = pos offset in binding 4; f[0] = scale, f[1] = soft-cap, f[2] = window bits). Spec constants: 1 = GW (<= 8), 2 = HD.
#include "common.glsl"
#define WG 128u
#define R 32u
#define BC 32u
layout(local_size_x = 128) in;
layout(constant_id = 1) const uint GW = 1;
layout(constant_id = 2) const uint HD = 64;
const uint G4 = HD / 4u;
const uint KP = G4 + 1u; // K/V tile row stride (vec4): the 8 rows a quarter subgroup reads sit on distinct banks
const uint NR = R / GW;  // query rows per workgroup
const uint TL = (BC * G4 + WG - 1u) / WG; // tile vec4s each invocation loads
layout(std430, binding = 0) writeonly buffer O { float o[]; };
layout(std430, binding = 1) readonly buffer Q4 { vec4 q4[]; };
layout(std430, binding = 2) readonly buffer Kc4 { vec4 kc4[]; };
layout(std430, binding = 3) readonly buffer Vc4 { vec4 vc4[]; };
layout(std430, binding = 4) readonly buffer P { int pos[]; };

// sized by the head dim (a spec constant), so that small heads fit devices with 32 KiB of shared
// memory; the host (rec_attention, fa_shared_bytes) checks the total against the device's limit
shared vec4 Qs[R * G4];
shared vec4 KV[BC * KP];
shared float Ps[R * (BC + 1u)];
shared float Xs[R * 8u]; // per slot, per key lane: partial maxima, then partial sums
shared uint Lr[R], Lo[R]; // per query row: its keys are [Lo, Lr)

void main() {
    uint S = pc.u[0], H = pc.u[1], Hkv = pc.u[2], C = pc.u[4];
    uint G = H / Hkv, ngrp = (G + GW - 1u) / GW;
    uint kvh = gl_WorkGroupID.x / ngrp, hg = gl_WorkGroupID.x % ngrp;
    uint h0 = kvh * G + hg * GW, gn = min(GW, G - hg * GW);
    uint s0 = gl_WorkGroupID.y * NR, t = gl_LocalInvocationID.x;
    uint W = Hkv * HD, st = t / 8u, kt = t % 8u;

    for (uint i = t; i < R * G4; i += WG) { // pre-scaled queries; zero past the rows / heads
        uint sl = i / G4, d4 = i % G4, rr = sl / GW, g = sl % GW, s = s0 + rr;
        vec4 v = vec4(0.0);
        if (rr < NR && s < S && g < gn) v = q4[((OFF_A + (s * H + h0 + g) * HD) >> 2) + d4] * pc.f[0];
        Qs[sl * G4 + d4] = v;
    }
    if (t < NR) {
        uint s = s0 + t;
        int p = s < S ? pos[OFF_E + pc.u[8] + s] : -1;
        uint L = p < 0 ? 0u : min(uint(p) + 1u, C);
        Lr[t] = L;
        Lo[t] = att_lo(p, L);
    }
    barrier();
    uint L[2], lo[2], jbeg = C, jend = 0u;
    [[unroll]] for (uint a = 0u; a < 2u; a++) {
        uint sl = 2u * st + a, rr = sl / GW;
        bool ok = rr < NR && sl % GW < gn;
        L[a] = ok ? Lr[rr] : 0u;
        lo[a] = ok ? Lo[rr] : 0u;
    }
    for (uint r = 0u; r < NR; r++)
        if (Lr[r] > Lo[r]) {
            jbeg = min(jbeg, Lo[r]);
            jend = max(jend, Lr[r]);
        }
    jbeg = min(jbeg, jend);
    float cap = pc.f[1];

    float m[2], l[2];
    vec4 acc[2][4];
    [[unroll]] for (uint a = 0u; a < 2u; a++) {
        m[a] = -3.0e38;
        l[a] = 0.0;
        [[unroll]] for (uint c = 0u; c < 4u; c++) acc[a][c] = vec4(0.0);
    }
    uint kbase = (OFF_B + kvh * HD) >> 2, vbase = (OFF_C + kvh * HD) >> 2, W4 = W >> 2;
    vec4 kr[TL], vr[TL];
    [[unroll]] for (uint x = 0u; x < TL; x++) {
        uint i = t + x * WG, key = jbeg + i / G4;
        kr[x] = i < BC * G4 && key < jend ? kc4[kbase + key * W4 + i % G4] : vec4(0.0);
    }
    for (uint jb = jbeg; jb < jend; jb += BC) {
        [[unroll]] for (uint x = 0u; x < TL; x++) {
            uint i = t + x * WG;
            if (i < BC * G4) KV[(i / G4) * KP + i % G4] = kr[x];
        }
        barrier();
        [[unroll]] for (uint x = 0u; x < TL; x++) { // this tile's V, in flight during the scores
            uint i = t + x * WG, key = jb + i / G4;
            vr[x] = i < BC * G4 && key < jend ? vc4[vbase + key * W4 + i % G4] : vec4(0.0);
        }
        float sc[2][4];
        [[unroll]] for (uint a = 0u; a < 2u; a++) [[unroll]] for (uint c = 0u; c < 4u; c++) sc[a][c] = 0.0;
        for (uint d4 = 0u; d4 < G4; d4++) {
            vec4 q0 = Qs[(2u * st) * G4 + d4], q1 = Qs[(2u * st + 1u) * G4 + d4];
            [[unroll]] for (uint c = 0u; c < 4u; c++) {
                vec4 k = KV[(kt + 8u * c) * KP + d4];
                sc[0][c] += dot(q0, k);
                sc[1][c] += dot(q1, k);
            }
        }
        [[unroll]] for (uint a = 0u; a < 2u; a++) {
            float mx = -3.0e38;
            [[unroll]] for (uint c = 0u; c < 4u; c++) {
                uint j = jb + kt + 8u * c;
                if (j >= lo[a] && j < L[a]) {
                    if (cap > 0.0) sc[a][c] = cap * loom_tanh(sc[a][c] / cap);
                    mx = max(mx, sc[a][c]);
                }
            }
            Xs[(2u * st + a) * 8u + kt] = mx;
        }
        barrier();
        [[unroll]] for (uint a = 0u; a < 2u; a++) {
            uint sl = 2u * st + a;
            float mx = m[a];
            [[unroll]] for (uint k = 0u; k < 8u; k++) mx = max(mx, Xs[sl * 8u + k]);
            float alpha = exp(m[a] - mx);
            m[a] = mx;
            l[a] *= alpha;
            [[unroll]] for (uint c = 0u; c < 4u; c++) acc[a][c] *= alpha;
            [[unroll]] for (uint c = 0u; c < 4u; c++) {
                uint j = kt + 8u * c;
                float p = jb + j >= lo[a] && jb + j < L[a] ? exp(sc[a][c] - mx) : 0.0;
                l[a] += p;
                Ps[sl * (BC + 1u) + j] = p;
            }
        }
        barrier(); // K and the maxima are read: V replaces K
        [[unroll]] for (uint x = 0u; x < TL; x++) {
            uint i = t + x * WG;
            if (i < BC * G4) KV[(i / G4) * KP + i % G4] = vr[x];
        }
        barrier();
        [[unroll]] for (uint x = 0u; x < TL; x++) { // the next tile's K, in flight during P.V
            uint i = t + x * WG, key = jb + BC + i / G4;
            kr[x] = i < BC * G4 && key < jend ? kc4[kbase + key * W4 + i % G4] : vec4(0.0);
        }
        uint nk = min(BC, jend - jb);
        for (uint j = 0u; j < nk; j++) {
            float p0 = Ps[(2u * st) * (BC + 1u) + j], p1 = Ps[(2u * st + 1u) * (BC + 1u) + j];
            [[unroll]] for (uint c = 0u; c < 4u; c++) {
                uint d4 = kt + 8u * c;
                if (d4 < G4) {
                    vec4 v = KV[j * KP + d4];
                    acc[0][c] += p0 * v;
                    acc[1][c] += p1 * v;
                }
            }
        }
        barrier(); // the next tile's K replaces V
    }
    [[unroll]] for (uint a = 0u; a < 2u; a++) Xs[(2u * st + a) * 8u + kt] = l[a];
    barrier();
    [[unroll]] for (uint a = 0u; a < 2u; a++) {
        uint sl = 2u * st + a, rr = sl / GW, g = sl % GW, s = s0 + rr;
        if (rr >= NR || s >= S || g >= gn) continue;
        float lt = 0.0;
        [[unroll]] for (uint k = 0u; k < 8u; k++) lt += Xs[sl * 8u + k];
        float inv = lt > 0.0 ? 1.0 / lt : 0.0;
        uint ob = OFF_D + (s * H + h0 + g) * HD;
        [[unroll]] for (uint c = 0u; c < 4u; c++) {
            uint d4 = kt + 8u * c;
            if (d4 < G4) {
                vec4 v = acc[a][c] * inv;
                o[ob + 4u * d4] = v.x;
                o[ob + 4u * d4 + 1u] = v.y;
                o[ob + 4u * d4 + 2u] = v.z;
                o[ob + 4u * d4 + 3u] = v.w;
            }
        }
    }
}

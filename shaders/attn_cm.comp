#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
// ATTENTION for prefill on cooperative matrices (tensor cores): attn_fa.comp's flash attention with
// Q.K^T and P.V as 16 x 16 x 16 f16 x f16 + f32 products. Same bindings, push constants, masks
// (causal from pos[s], sliding window, soft-cap; no ring caches, no block tables) and output as
// attn_fa.comp; the host (vk_record.c rec_attention) takes it for S >= 64 rows on a device with
// cooperative matrices when HD is 16, 32, 64 or 128 (a build per head dim: -DHD=...) and the
// subgroup size is 32 or 64.
//
// Work split (deliberately plain):
//   * A workgroup = NSG = 4 subgroups and one kv head. Its R = 64 (row, head) slots are NR = 64 / GW
//     consecutive query rows times GW query heads sharing that kv head (slot = row * GW + head, as
//     attn_fa.comp); subgroup w owns slots 16w .. 16w + 15: one 16-row A fragment per 16 dims.
//   * Keys go by in tiles of BC = 32. The workgroup converts the tile's K and V rows (f32 in the
//     cache) to f16 in shared memory once for all 64 slots; then each subgroup, on its own:
//       1. S = Qhat K^T: for each 16-key half, sum over the head dim of (16 x 16 Qhat fragment) x
//          (16 x 16 K^T fragment) into an f32 accumulator, stored to its S slice (16 x 32 f32);
//       2. the online softmax, in plain code on that slice: row r belongs to lanes r * LPR ..
//          r * LPR + LPR - 1 (LPR = subgroup size / 16), each lane a quarter-strided set of the
//          32 keys: mask (key outside [lo, L) of the row), soft-cap, the row's tile maximum
//          (lanes exchange partial maxima through shared memory), m' = max(m, tile max),
//          alpha = exp(m - m'), p = exp(s - m') rounded to f16 into its P slice (16 x 32 f16),
//          l = l * alpha + the f16 p's (each lane sums its own keys; the LPR partial sums are
//          added at the end, alpha being the same for the whole row);
//       3. O = O * A, A the 16 x 16 accumulator-shaped matrix whose row r is alpha_r: written to
//          shared memory by the lanes and loaded as a cooperative matrix, so that the
//          component-wise product (GL_KHR_cooperative_matrix: operands of one type have one
//          element layout) scales row r of every O fragment by alpha_r whatever that layout is
//          (built with ROWSCALE_SHARED, LOOM_VK_FA=cms: each O fragment stored to the S slice,
//          scaled there by plain code and loaded back instead, in case a driver mishandles the
//          component-wise product);
//          (built with PREFETCH, LOOM_VK_FA=cmp and the default: the next tile's K/V loads are issued into registers
//          before this tile's products, attn_fa.comp's way of hiding their latency);
//       4. O += P V: the (16 x 16 P fragment) x (16 x 16 V fragment) products, f32 accumulators.
//   * At the end each O fragment goes through the S slice to memory, divided by its row's l (the
//     sum of the same f16 p's P.V used, so the output is a convex combination of the f16 V rows).
//
// Emulation (what tests/unit/test_attn_cm_emu.c runs on the CPU, the same blocked algorithm in C
// with the same roundings and tile order): for a row with keys [lo, L) and tiles jb = jbeg, jbeg +
// 32, ...: m_0 = -3e38, l_0 = 0, O_0 = 0; per tile s_j = sum_d f16(scale q_d) f16(k_jd) (f32),
// m_t = max(m_{t-1}, max_j s_j), a = exp(m_{t-1} - m_t), p_j = f16(exp(s_j - m_t)) (0 outside
// [lo, L)), l_t = a l_{t-1} + sum_j p_j, O_t = a O_{t-1} + sum_j p_j f16(v_j); out = O_T / l_T
// (0 when l_T = 0). Tiles with no key of this row leave m, l and O alone (a = 1, p = 0).
// Precision (with u = 2^-10, the spacing of f16 relative to a value, whatever the rounding
// direction): |s_j - exact| <= (2u + u^2) sum_d |scale q_d k_jd| + f32 terms, so each weight
// p_j / l moves by a factor within exp(+-2 E) (1 +- u)^2, E the largest score error of the row, and
// V carries u: |out - exact| <= ((exp(2 E + 2u) - 1) + u) max |v| (+ subnormal and f32 terms; see
// the test and docs/vulkan-backend.md). q, k, v beyond 65504 in magnitude overflow f16.
//
// Bindings and push constants as attn_fa.comp (u[0] = S, u[1] = H, u[2] = Hkv, u[4] = C, u[8] = pos
// offset in binding 4; f[0] = scale, f[1] = soft-cap, f[2] = window bits). Spec constants:
// 0 = workgroup size (4 x SG), 1 = GW (<= 8), 3 = SG (the device's subgroup size, 32 or 64).
#include "common.glsl"
#ifndef HD
#error "attn_cm.comp: define HD (16, 32, 64 or 128; vulkan.cmake)"
#endif
#ifdef NSG8
// (LOOM_VK_FA=cmp8, head dims <= 64) 8 subgroups: 128 slots share each K/V tile, the queries are
// staged through T in two passes of 64 rows, and the lane exchange lives in the alpha matrix's
// first 64 floats (a subgroup barrier between its last read and the alpha writes), so the shared
// memory fits 48 KiB: 47,616 B at head dim 64
#define NSG 8u
#define R 128u
#else
#define NSG 4u
#define R 64u  // slots per workgroup: NSG x 16
#endif
#define BC 32u // keys per tile
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint GW = 1;
layout(constant_id = 3) const uint SG = 32;
const uint NT = NSG * SG;
const uint LPR = SG / 16u;  // lanes per score row
const uint NR = R / GW;     // query rows per workgroup
#define G4 (HD / 4u)
#define NF (HD / 16u)           // 16-dim fragments of a head
#define KST ((HD + 8u) / 4u)    // Q/K/V tile row stride in f16vec4 (HD + 8 halves: rows 16 B aligned, banks spread)
#define SST (BC + 4u)           // S slice row stride in floats (36: 16 B aligned rows)
#define PST ((BC + 8u) / 4u)    // P slice row stride in f16vec4 (40 halves)
layout(std430, binding = 0) writeonly buffer O { float o[]; };
layout(std430, binding = 1) readonly buffer Q4 { vec4 q4[]; };
layout(std430, binding = 2) readonly buffer Kc4 { vec4 kc4[]; };
layout(std430, binding = 3) readonly buffer Vc4 { vec4 vc4[]; };
layout(std430, binding = 4) readonly buffer P { int pos[]; };

// rows 0..63: the queries (until they are in registers); then rows 0..31 the K tile, 32..63 the V tile
shared f16vec4 T[64u * KST];
shared float Ss[NSG * 16u * SST];    // per subgroup: 16 x 32 scores (f32); O staging (ROWSCALE_SHARED, the end)
shared f16vec4 Ps[NSG * 16u * PST];  // per subgroup: 16 x 32 p (f16)
shared float Ds[NSG * 256u];         // per subgroup: 16 x 16, row r = alpha_r
#ifdef NSG8
#define XS(i) Ds[(i) / 64u * 256u + (i) % 64u]
#else
shared float Xs[NSG * 64u];          // per lane: partial maxima, then partial sums (SG <= 64)
#define XS(i) Xs[i]
#endif
shared float Li[R];                  // per slot: 1 / l
shared uint Lr[R], Lo[R];            // per query row: its keys are [Lo, Lr)

#define CMA coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseA>
#define CMB coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseB>
#define CMC coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator>

void main() {
    uint S = pc.u[0], H = pc.u[1], Hkv = pc.u[2], C = pc.u[4];
    uint G = H / Hkv, ngrp = (G + GW - 1u) / GW;
    uint kvh = gl_WorkGroupID.x / ngrp, hg = gl_WorkGroupID.x % ngrp;
    uint h0 = kvh * G + hg * GW, gn = min(GW, G - hg * GW);
    uint s0 = gl_WorkGroupID.y * NR, t = gl_LocalInvocationID.x;
    uint sg = gl_SubgroupID, lane = gl_SubgroupInvocationID;
    uint W4 = Hkv * G4; // cache row stride in vec4

#ifdef NSG8
    CMA qa[NF];
    for (uint ps = 0u; ps < 2u; ps++) { // slots 64 ps .. 64 ps + 63 through T rows 0..63
        for (uint i = t; i < 64u * G4; i += NT) {
            uint sl = ps * 64u + i / G4, d4 = i % G4, rr = sl / GW, g = sl % GW, s = s0 + rr;
            vec4 v = vec4(0.0);
            if (rr < NR && s < S && g < gn) v = q4[((OFF_A + (s * H + h0 + g) * HD) >> 2) + d4] * pc.f[0];
            T[(i / G4) * KST + d4] = f16vec4(v);
        }
        if (ps == 0u && t < NR) {
            uint s = s0 + t;
            int p = s < S ? pos[OFF_E + pc.u[8] + s] : -1;
            uint L = p < 0 ? 0u : min(uint(p) + 1u, C);
            Lr[t] = L;
            Lo[t] = att_lo(p, L);
        }
        barrier();
        if (sg / 4u == ps) // uniform in the subgroup
            [[unroll]] for (uint f = 0u; f < NF; f++)
                coopMatLoad(qa[f], T, ((sg % 4u) * 16u) * KST + f * 4u, KST, gl_CooperativeMatrixLayoutRowMajor);
        barrier();
    }
#else
    for (uint i = t; i < R * G4; i += NT) { // pre-scaled queries as f16; zero past the rows / heads
        uint sl = i / G4, d4 = i % G4, rr = sl / GW, g = sl % GW, s = s0 + rr;
        vec4 v = vec4(0.0);
        if (rr < NR && s < S && g < gn) v = q4[((OFF_A + (s * H + h0 + g) * HD) >> 2) + d4] * pc.f[0];
        T[sl * KST + d4] = f16vec4(v);
    }
    if (t < NR) {
        uint s = s0 + t;
        int p = s < S ? pos[OFF_E + pc.u[8] + s] : -1;
        uint L = p < 0 ? 0u : min(uint(p) + 1u, C);
        Lr[t] = L;
        Lo[t] = att_lo(p, L);
    }
    barrier();
    CMA qa[NF];
    [[unroll]] for (uint f = 0u; f < NF; f++)
        coopMatLoad(qa[f], T, (sg * 16u) * KST + f * 4u, KST, gl_CooperativeMatrixLayoutRowMajor);
#endif
    // the keys any row of the workgroup sees (uniform: every invocation reads the same shared values)
    uint jbeg = C, jend = 0u;
    for (uint r = 0u; r < NR; r++)
        if (Lr[r] > Lo[r]) {
            jbeg = min(jbeg, Lo[r]);
            jend = max(jend, Lr[r]);
        }
    jbeg = min(jbeg, jend);
    // this lane's score row, part of it, and the row's keys
    uint r = lane / LPR, part = lane % LPR, sl = sg * 16u + r, rr = sl / GW;
    bool ok = rr < NR && sl % GW < gn;
    uint L = ok ? Lr[rr] : 0u, lo = ok ? Lo[rr] : 0u;
    float cap = pc.f[1];
    uint sb = sg * 16u * SST, pb = sg * 16u * PST, db = sg * 256u, xb = sg * 64u;
    barrier(); // every subgroup has its queries: T takes the K/V tiles now

    CMC oc[NF];
    [[unroll]] for (uint f = 0u; f < NF; f++) oc[f] = CMC(0.0);
    float m = -3.0e38, l = 0.0;
    uint kbase = (OFF_B + kvh * HD) >> 2, vbase = (OFF_C + kvh * HD) >> 2;
#ifdef PREFETCH
    // (LOOM_VK_FA=cmp) the tile's K and V vec4s of this invocation in registers, the next tile's
    // loads in flight during this one's products; BC * G4 / NT <= NF of them (NT >= 128)
    vec4 kq[NF], vq[NF];
#define KV_FETCH(jn)                                                                               \
    [[unroll]] for (uint x = 0u; x < NF; x++) {                                                    \
        uint i = t + x * NT, key = (jn) + i / G4;                                                  \
        bool ld = i < BC * G4 && key < jend;                                                       \
        kq[x] = ld ? kc4[kbase + key * W4 + i % G4] : vec4(0.0);                                   \
        vq[x] = ld ? vc4[vbase + key * W4 + i % G4] : vec4(0.0);                                   \
    }
    KV_FETCH(jbeg)
#endif
    for (uint jb = jbeg; jb < jend; jb += BC) {
#ifdef PREFETCH
        [[unroll]] for (uint x = 0u; x < NF; x++) {
            uint i = t + x * NT;
            if (i < BC * G4) {
                T[(i / G4) * KST + i % G4] = f16vec4(kq[x]);
                T[(BC + i / G4) * KST + i % G4] = f16vec4(vq[x]);
            }
        }
        barrier();
        KV_FETCH(jb + BC)
#else
        for (uint i = t; i < BC * G4; i += NT) {
            uint kr = i / G4, d4 = i % G4, key = jb + kr;
            vec4 kv = vec4(0.0), vv = vec4(0.0);
            if (key < jend) {
                kv = kc4[kbase + key * W4 + d4];
                vv = vc4[vbase + key * W4 + d4];
            }
            T[kr * KST + d4] = f16vec4(kv);
            T[(BC + kr) * KST + d4] = f16vec4(vv);
        }
        barrier();
#endif
        // 1. scores of this subgroup's 16 slots x 32 keys
        [[unroll]] for (uint c = 0u; c < BC / 16u; c++) {
            CMC sc = CMC(0.0);
            [[unroll]] for (uint f = 0u; f < NF; f++) {
                CMB kb; // (dim, key): column `key` of K^T is row `key` of the K tile
                coopMatLoad(kb, T, (c * 16u) * KST + f * 4u, KST, gl_CooperativeMatrixLayoutColumnMajor);
                sc = coopMatMulAdd(qa[f], kb, sc);
            }
            coopMatStore(sc, Ss, sb + c * 16u, SST, gl_CooperativeMatrixLayoutRowMajor);
        }
        subgroupMemoryBarrierShared();
        subgroupBarrier();
        // 2. online softmax of row r over this tile (this lane: quads part, part + LPR, ...)
        uint rs = sb + r * SST;
        float mx = -3.0e38;
        for (uint q = part; q < BC / 4u; q += LPR) {
            vec4 v = vec4(Ss[rs + 4u * q], Ss[rs + 4u * q + 1u], Ss[rs + 4u * q + 2u], Ss[rs + 4u * q + 3u]);
            [[unroll]] for (uint e = 0u; e < 4u; e++) {
                uint j = jb + 4u * q + e;
                if (j >= lo && j < L) {
                    if (cap > 0.0) v[e] = cap * loom_tanh(v[e] / cap);
                    mx = max(mx, v[e]);
                }
            }
            if (cap > 0.0) // this lane reads its own values back below
                [[unroll]] for (uint e = 0u; e < 4u; e++) Ss[rs + 4u * q + e] = v[e];
        }
        XS(xb + lane) = mx;
        subgroupMemoryBarrierShared();
        subgroupBarrier();
        for (uint k = 0u; k < LPR; k++) mx = max(mx, XS(xb + r * LPR + k));
#ifdef NSG8
        subgroupBarrier(); // every lane has read the exchange before the alpha matrix over it is written
#endif
        float mn = max(m, mx), alpha = exp(m - mn);
        m = mn;
        l *= alpha;
        for (uint q = part; q < BC / 4u; q += LPR) {
            vec4 v = vec4(Ss[rs + 4u * q], Ss[rs + 4u * q + 1u], Ss[rs + 4u * q + 2u], Ss[rs + 4u * q + 3u]);
            f16vec4 p;
            [[unroll]] for (uint e = 0u; e < 4u; e++) {
                uint j = jb + 4u * q + e;
                p[e] = float16_t(j >= lo && j < L ? exp(v[e] - mn) : 0.0);
                l += float(p[e]);
            }
            Ps[pb + r * PST + q] = p;
        }
        for (uint c = part; c < 16u; c += LPR) Ds[db + r * 16u + c] = alpha;
        subgroupMemoryBarrierShared();
        subgroupBarrier();
        // 3. O = O * alpha (per row); 4. O += P V
#ifdef ROWSCALE_SHARED
        // (the A/B variant LOOM_VK_FA=cms: each O fragment through the S slice, scaled there by
        // plain code, loaded back; no component-wise product of cooperative matrices)
        [[unroll]] for (uint f = 0u; f < NF; f++) {
            coopMatStore(oc[f], Ss, sb, SST, gl_CooperativeMatrixLayoutRowMajor);
            subgroupMemoryBarrierShared();
            subgroupBarrier();
            for (uint e = lane; e < 256u; e += SG) Ss[sb + (e / 16u) * SST + e % 16u] *= Ds[db + (e / 16u) * 16u];
            subgroupMemoryBarrierShared();
            subgroupBarrier();
            coopMatLoad(oc[f], Ss, sb, SST, gl_CooperativeMatrixLayoutRowMajor);
            subgroupBarrier(); // every lane has its fragment before the next one is stored
        }
#else
        CMC am;
        coopMatLoad(am, Ds, db, 16u, gl_CooperativeMatrixLayoutRowMajor);
        [[unroll]] for (uint f = 0u; f < NF; f++) oc[f] = oc[f] * am;
#endif
        [[unroll]] for (uint c = 0u; c < BC / 16u; c++) {
            CMA pa;
            coopMatLoad(pa, Ps, pb + c * 4u, PST, gl_CooperativeMatrixLayoutRowMajor);
            [[unroll]] for (uint f = 0u; f < NF; f++) {
                CMB vb; // (key, dim): row `key` of the V tile
                coopMatLoad(vb, T, (BC + c * 16u) * KST + f * 4u, KST, gl_CooperativeMatrixLayoutRowMajor);
                oc[f] = coopMatMulAdd(pa, vb, oc[f]);
            }
        }
        barrier(); // every subgroup is done with the K/V tile (and its own slices) before the next
    }
    // the row's sum: this lane's keys plus its LPR - 1 partners'
    XS(xb + lane) = l;
    subgroupMemoryBarrierShared();
    subgroupBarrier();
    if (part == 0u) {
        float lt = 0.0;
        for (uint k = 0u; k < LPR; k++) lt += XS(xb + r * LPR + k);
        Li[sl] = lt > 0.0 ? 1.0 / lt : 0.0;
    }
    subgroupMemoryBarrierShared();
    subgroupBarrier();
    [[unroll]] for (uint f = 0u; f < NF; f++) {
        coopMatStore(oc[f], Ss, sb, SST, gl_CooperativeMatrixLayoutRowMajor);
        subgroupMemoryBarrierShared();
        subgroupBarrier();
        for (uint e = lane; e < 256u; e += SG) {
            uint er = e / 16u, ec = e % 16u, es = sg * 16u + er, row = es / GW, g = es % GW, s = s0 + row;
            if (row < NR && s < S && g < gn) o[OFF_D + (s * H + h0 + g) * HD + f * 16u + ec] = Ss[sb + er * SST + ec] * Li[es];
        }
        subgroupBarrier(); // every lane has read the fragment before the next one lands
    }
}

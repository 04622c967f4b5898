#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
// MATMUL (prefill) on cooperative matrices, the A/B variants of matmul_cm.comp picked by
// LOOM_VK_CM_VARIANT (vk_record.c's cm_variants table says which defines each one is built with).
// Same product, push constants, edge handling and rounding as matmul_cm.comp (read that first):
// y[M, N] = x[M, K] W[N, K]^T (+ bias), x and W rounded to f16, f32 accumulators; u[0] = M, u[1] = N
// (columns in this dispatch), u[2] = K, u[3] = has bias, u[4] = n0, u[5] = y row stride, u[6] bit 0
// x rows vector-aligned, bit 1 W rows 8-half aligned, u[7] = K splits (partials at y + z * u[8]).
// Weights: W_F16 (also the f16 copy of a block-quantised W) or W_BF16; or a block-quantised
// type W_Q8_0 ... W_IQ4_XS (LOOM_VK_CM_QTILE=1: in-tile dequantisation): the W tile is then read
// straight from the raw blocks, no f16 copy. An invocation takes a unit of the W tile: a row's 32
// weights of the K step (whole blocks of 32 or a 32-weight sub-block: K is whole blocks, so a unit
// is all in or all out; BK / 32 units per row, the invocations of one row side by side);
// fetch() loads the raw words that hold them into registers (qtile.glsl's qt_load: loads
// only, in flight during this step's products as the f16 tiles' are) and put() decodes them
// (qt_dec) and stores f16. The values are wload8's (the f16 copy's) before the rounding to f16.
// Build-time shape (all required but BK and XH):
//   BM x BN   workgroup tile; WROWS x WCOLS subgroups, each (BM / WROWS) x (BN / WCOLS)
//   BK        the K step, a multiple of 16 (of 32 for block-quantised W); default 32
//   STAGES    1: one shared buffer, two barriers per K step (as matmul_cm.comp);
//             2: two shared buffers, one barrier per K step (the next step's tiles are stored
//                into the other buffer while this one is multiplied)
//   XH        x is already f16 (binding 1 is a packed-half copy that tohalf.comp wrote): the tile
//             loads read 8 halves per vector, half the bytes of f32 x, and convert nothing
// Both operands are staged as f16vec4 (one 8-byte shared store per 4 elements); rows are BK + 8
// halves apart (80 bytes for BK = 32, 144 for BK = 64: either way the 8 rows an 8x8 fragment load
// touches fall in 8 different 16-byte slots of 128 bytes, so the fragment loads do not conflict on
// banks). Shared memory, bytes: STAGES * (BM + BN) * (BK + 8) * 2 + NSG * 1024 (vk_record.c's CMV).
#include "common.glsl"
#define W_BINDING 2
#include "wload.glsl"
#ifdef W_QUANT
#include "qtile.glsl"
#endif
layout(local_size_x_id = 0) in;
// the device's subgroup size (spec constant 1): sizes the prefetch registers exactly
layout(constant_id = 1) const uint SG = 32;
layout(std430, binding = 0) writeonly buffer Y { float y[]; };
#ifdef XH
layout(std430, binding = 1) readonly buffer X { uint xh[]; };
layout(std430, binding = 1) readonly buffer X8 { uvec4 xh8[]; };
#else
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer X4 { vec4 x4[]; };
#endif
layout(std430, binding = 3) readonly buffer Bi { float bias[]; };

#if !defined(BM) || !defined(BN) || !defined(WROWS) || !defined(WCOLS) || !defined(STAGES)
#error "matmul_cmv.comp: define BM, BN, WROWS, WCOLS and STAGES (vulkan.cmake)"
#endif
#ifndef BK
#define BK 32
#endif
#define NSG (WROWS * WCOLS)
#define WM (BM / WROWS)
#define WN (BN / WCOLS)
#define FM (WM / 16)
#define FN (WN / 16)
#define SK4 ((BK + 8) / 4) // shared row stride in f16vec4
shared f16vec4 As[STAGES * BM * SK4];
shared f16vec4 Bs[STAGES * BN * SK4];
shared float Cs[NSG * 256];

#define CMA coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseA>
#define CMB coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseB>
#define CMC coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator>

f16vec4 wquad(uint a, uint b) {
#if defined(W_BF16)
    return f16vec4(vec4(uintBitsToFloat(a << 16), uintBitsToFloat(a & 0xffff0000u), uintBitsToFloat(b << 16),
                        uintBitsToFloat(b & 0xffff0000u)));
#else
    return f16vec4(unpackFloat2x16(a), unpackFloat2x16(b));
#endif
}

#ifdef XH
#define XE 8u // x elements per vector load
#define XREG uvec4
float xload(uint e) { return unpackHalf2x16(xh[e >> 1])[e & 1u]; }
#else
#define XE 4u
#define XREG vec4
float xload(uint e) { return x[e]; }
#endif
// vector loads per invocation and K step (rounded up; the loops check the bound)
#define NT (NSG * SG)
#define XV ((BM * (BK / XE) + NT - 1u) / NT)
#if BK % 16 != 0
#error "matmul_cmv.comp: BK must be a multiple of 16"
#endif
#ifdef W_QUANT
#if BK % 32 != 0
#error "matmul_cmv.comp: block-quantised W needs BK a multiple of 32 (a unit is one 32-weight run of a row)"
#endif
#define WU (BK / 32u)                  // units per row and K step
#define WV ((BN * WU + NT - 1u) / NT) // units per invocation
uint rb[WV][QTW];                     // their raw words
bool rin[WV];                         // and whether the unit is in range
#else
#define WV ((BN * (BK / 8u) + NT - 1u) / NT)
uvec4 rb[WV];
#endif

uint M, N, K, k1, row0, col0, tid;
bool xvec, wvec;
XREG ra[XV];

// the vector tiles of K step kb into registers (k1 is K or a multiple of BK, so an aligned vector
// is all in or all out)
void fetch(uint kb) {
    if (xvec) {
        [[unroll]] for (uint l = 0u; l < XV; l++) {
            uint i = tid + l * NT, r = i / (BK / XE), gr = row0 + r, gk = kb + (i % (BK / XE)) * XE;
#ifdef XH
            ra[l] = (i < BM * (BK / XE) && gr < M && gk < k1) ? xh8[(OFF_A + gr * K + gk) >> 3] : uvec4(0u);
#else
            ra[l] = (i < BM * (BK / XE) && gr < M && gk < k1) ? x4[(OFF_A + gr * K + gk) >> 2] : vec4(0.0);
#endif
        }
    }
    if (wvec) {
        [[unroll]] for (uint l = 0u; l < WV; l++) {
#ifdef W_QUANT
            uint i = tid + l * NT, gc = col0 + i / WU, gk = kb + (i % WU) * 32u;
            rin[l] = i < BN * WU && gc < N && gk < k1;
            if (rin[l]) qt_load(OFF_B + gc * K + gk, rb[l]);
#else
            uint i = tid + l * NT, r = i / (BK / 8u), gc = col0 + r, gk = kb + (i % (BK / 8u)) * 8u;
            rb[l] = (i < BN * (BK / 8u) && gc < N && gk < k1) ? w8[(OFF_B + gc * K + gk) >> 3] : uvec4(0u);
#endif
        }
    }
}

// K step kb's tiles into shared buffer st: from the registers (vector path) or straight from
// global memory, element by element with bounds (scalar path)
void put(uint st, uint kb) {
    uint ab = st * BM * SK4, bb = st * BN * SK4;
    if (xvec) {
        [[unroll]] for (uint l = 0u; l < XV; l++) {
            uint i = tid + l * NT;
            if (i >= BM * (BK / XE)) break;
            uint s = ab + (i / (BK / XE)) * SK4 + (i % (BK / XE)) * (XE / 4u);
#ifdef XH
            As[s] = f16vec4(unpackFloat2x16(ra[l].x), unpackFloat2x16(ra[l].y));
            As[s + 1u] = f16vec4(unpackFloat2x16(ra[l].z), unpackFloat2x16(ra[l].w));
#else
            As[s] = f16vec4(ra[l]);
#endif
        }
    } else {
        for (uint i = tid; i < BM * (BK / 4u); i += NT) {
            uint r = i / (BK / 4u), c = (i % (BK / 4u)) * 4u, gr = row0 + r, gk = kb + c;
            vec4 v = vec4(0.0);
            if (gr < M) {
                uint e = OFF_A + gr * K + gk;
                if (gk < k1) v.x = xload(e);
                if (gk + 1u < k1) v.y = xload(e + 1u);
                if (gk + 2u < k1) v.z = xload(e + 2u);
                if (gk + 3u < k1) v.w = xload(e + 3u);
            }
            As[ab + r * SK4 + c / 4u] = f16vec4(v);
        }
    }
    // W tile: row n of W is column n of B (column-major B with stride SK4)
    if (wvec) {
        [[unroll]] for (uint l = 0u; l < WV; l++) {
#ifdef W_QUANT
            uint i = tid + l * NT;
            if (i >= BN * WU) break;
            uint r = i / WU, s = (i % WU) * 8u; // s: the unit's first f16vec4 in the row
            vec4 v[8];
            if (rin[l]) {
                qt_dec(OFF_B + (col0 + r) * K + kb + s * 4u, rb[l], v);
            } else {
                [[unroll]] for (uint q = 0u; q < 8u; q++) v[q] = vec4(0.0);
            }
            [[unroll]] for (uint q = 0u; q < 8u; q++) Bs[bb + r * SK4 + s + q] = f16vec4(v[q]);
#else
            uint i = tid + l * NT;
            if (i >= BN * (BK / 8u)) break;
            uint s = bb + (i / (BK / 8u)) * SK4 + (i % (BK / 8u)) * 2u;
            Bs[s] = wquad(rb[l].x, rb[l].y);
            Bs[s + 1u] = wquad(rb[l].z, rb[l].w);
#endif
        }
    } else {
        for (uint i = tid; i < BN * (BK / 4u); i += NT) {
            uint r = i / (BK / 4u), c = (i % (BK / 4u)) * 4u, gc = col0 + r, gk = kb + c;
            vec4 v = vec4(0.0);
            if (gc < N) {
                uint e = OFF_B + gc * K + gk;
                if (gk < k1) v.x = wload(e);
                if (gk + 1u < k1) v.y = wload(e + 1u);
                if (gk + 2u < k1) v.z = wload(e + 2u);
                if (gk + 3u < k1) v.w = wload(e + 3u);
            }
            Bs[bb + r * SK4 + c / 4u] = f16vec4(v);
        }
    }
}

void main() {
    M = pc.u[0];
    N = pc.u[1];
    K = pc.u[2];
    tid = gl_LocalInvocationID.x;
    row0 = gl_WorkGroupID.y * BM;
    col0 = gl_WorkGroupID.x * BN;
    uint warp = gl_SubgroupID, wr = warp % WROWS, wc = warp / WROWS;
    xvec = (pc.u[6] & 1u) != 0u;
    wvec = (pc.u[6] & 2u) != 0u;

    CMC acc[FM * FN];
    [[unroll]] for (uint i = 0u; i < FM * FN; i++) acc[i] = CMC(0.0);

    uint ksplit = max(pc.u[7], 1u), kc = ((K + ksplit - 1u) / ksplit + BK - 1u) / BK * BK;
    uint k0 = gl_WorkGroupID.z * kc;
    k1 = min(K, k0 + kc);
    uint nk = k0 < k1 ? (k1 - k0 + BK - 1u) / BK : 0u;

#define MMA(st)                                                                                    \
    [[unroll]] for (uint kk = 0u; kk < BK; kk += 16u) {                                            \
        CMA a[FM];                                                                                 \
        [[unroll]] for (uint i = 0u; i < FM; i++)                                                  \
            coopMatLoad(a[i], As, ((st) * BM + wr * WM + i * 16u) * SK4 + kk / 4u, SK4,            \
                        gl_CooperativeMatrixLayoutRowMajor);                                       \
        [[unroll]] for (uint j = 0u; j < FN; j++) {                                                \
            CMB b;                                                                                 \
            coopMatLoad(b, Bs, ((st) * BN + wc * WN + j * 16u) * SK4 + kk / 4u, SK4,               \
                        gl_CooperativeMatrixLayoutColumnMajor);                                    \
            [[unroll]] for (uint i = 0u; i < FM; i++)                                              \
                acc[i * FN + j] = coopMatMulAdd(a[i], b, acc[i * FN + j]);                         \
        }                                                                                          \
    }

    if (nk > 0u) fetch(k0);
#if STAGES == 2
    // put step 0; then each step: loads of the next in flight, products of this one, the next
    // stored into the other buffer (whose readers all passed the last barrier), one barrier
    if (nk > 0u) put(0u, k0);
    barrier();
    for (uint it = 0u; it < nk; it++) {
        uint st = it & 1u, kb = k0 + it * BK;
        bool more = it + 1u < nk;
        if (more) fetch(kb + BK);
        MMA(st)
        if (more) put(st ^ 1u, kb + BK);
        barrier();
    }
#else
    for (uint it = 0u; it < nk; it++) {
        uint kb = k0 + it * BK;
        put(0u, kb);
        barrier();
        if (it + 1u < nk) fetch(kb + BK); // the next tiles' loads overlap this step's products
        MMA(0u)
        barrier();
    }
#endif

    // Each fragment goes through this subgroup's 16 x 16 slice of shared memory, so the stores can
    // check bounds, add the bias and take any row stride / element offset.
    bool hb = pc.u[3] != 0u;
    uint lane = gl_SubgroupInvocationID, sgs = gl_SubgroupSize, cs = warp * 256u;
    uint ybase = OFF_D + gl_WorkGroupID.z * pc.u[8] + pc.u[4];
    [[unroll]] for (uint i = 0u; i < FM; i++) {
        [[unroll]] for (uint j = 0u; j < FN; j++) {
            uint r0 = row0 + wr * WM + i * 16u, c0 = col0 + wc * WN + j * 16u;
            if (r0 >= M || c0 >= N) continue; // uniform in the subgroup
            coopMatStore(acc[i * FN + j], Cs, cs, 16u, gl_CooperativeMatrixLayoutRowMajor);
            subgroupMemoryBarrierShared();
            subgroupBarrier();
            for (uint e = lane; e < 256u; e += sgs) {
                uint r = r0 + e / 16u, c = c0 + e % 16u;
                if (r < M && c < N) {
                    float v = Cs[cs + e];
                    if (hb) v += bias[OFF_C + c];
                    y[ybase + r * pc.u[5] + c] = v;
                }
            }
            subgroupBarrier(); // every lane has read its values before the next fragment lands
        }
    }
}

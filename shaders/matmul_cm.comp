#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
// MATMUL (prefill) on cooperative matrices (tensor cores): y[M, N] = x[M, K] W[N, K]^T (+ bias).
// Built only with a glslang that knows GL_KHR_cooperative_matrix (vulkan.cmake checks), picked
// only on devices that offer 16x16x16 f16 x f16 -> f32 at subgroup scope (vk_device.c).
// x (f32) and W (f16, or bf16 converted, or a block-quantised type dequantised in registers by
// wquant.glsl) are staged in shared memory as f16, 32 of K at a time; accumulators are f32. So x
// is rounded to f16 (relative 2^-11): f16/bf16-weight models, whose tolerance (2e-2) absorbs it,
// and quantised ones, whose own rounding (2^-8 and coarser) dwarfs it; f32 weights keep the FMA
// kernel (matmul.comp). A dequantised Q8_0/Q4_K/Q6_K element (f16 scale x integer) may need more
// than f16's 11 bits: it is rounded too, to within 2^-11 of itself.
// Tiles: BIG = 128 x 128 with 8 subgroups (4 x 2, each 32 x 64 = 2 x 4 fragments), else 64 x 64
// with 4 subgroups (2 x 2, each 32 x 32). The workgroup size (spec constant 0) is subgroups x the
// device's subgroup size (spec constant 1). When rows are aligned, the next K step's tiles are
// loaded into registers while this one is multiplied.
// Push constants as matmul.comp: u[0] = M, u[1] = N (columns in this dispatch), u[2] = K,
// u[3] = has bias, u[4] = n0, u[5] = y row stride, u[7] = K splits (gl_WorkGroupID.z = split,
// partial products at y + z * u[8]). u[6]: bit 0 = x rows are vec4-aligned (K % 4 == 0 and the
// binding offset too), bit 1 = W rows are 8-half aligned: then the tile loads are vectors.
#include "common.glsl"
#define W_BINDING 2
#include "wload.glsl"
layout(local_size_x_id = 0) in;
// the device's subgroup size (spec constant 1): sizes the prefetch registers exactly
layout(constant_id = 1) const uint SG = 32;
layout(std430, binding = 0) writeonly buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer X4 { vec4 x4[]; };
layout(std430, binding = 3) readonly buffer Bi { float bias[]; };

#ifdef BIG
#define BM 128
#define BN 128
#define WROWS 4
#else
#define BM 64
#define BN 64
#define WROWS 2
#endif
#define WCOLS 2
#define WM (BM / WROWS)
#define WN (BN / WCOLS)
#define FM (WM / 16)
#define FN (WN / 16)
#define BK 32
// shared row stride in halves: 80 bytes keeps fragment rows 16-byte aligned and off one bank
#define SK (BK + 8)
shared float16_t As[BM * SK];
shared float16_t Bs[BN * SK];
shared float Cs[WROWS * WCOLS * 256];

#define CMA coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseA>
#define CMB coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseB>
#define CMC coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator>

#ifdef W_QUANT
// 8 weights dequantised in registers (wquant.glsl), as four f16 pairs: a quantised row is whole
// blocks of 32 or 256, so the vector loads never straddle a block (and the binding is bytes:
// always "aligned")
#define WLOAD8(e) wload8_h(e)
#else
#define WLOAD8(e) w8[(e) >> 3]
#endif

f16vec2 wpair(uint v) {
#if defined(W_BF16)
    return f16vec2(vec2(uintBitsToFloat(v << 16), uintBitsToFloat(v & 0xffff0000u)));
#else
    return unpackFloat2x16(v);
#endif
}

void main() {
    uint M = pc.u[0], N = pc.u[1], K = pc.u[2];
    uint tid = gl_LocalInvocationID.x, T = gl_WorkGroupSize.x;
    uint row0 = gl_WorkGroupID.y * BM, col0 = gl_WorkGroupID.x * BN;
    uint warp = gl_SubgroupID, wr = warp % WROWS, wc = warp / WROWS;
    bool xvec = (pc.u[6] & 1u) != 0u, wvec = (pc.u[6] & 2u) != 0u;

    CMC acc[FM * FN];
    [[unroll]] for (uint i = 0u; i < FM * FN; i++) acc[i] = CMC(0.0);

    uint ksplit = max(pc.u[7], 1u), kc = ((K + ksplit - 1u) / ksplit + BK - 1u) / BK * BK;
    uint k0 = gl_WorkGroupID.z * kc, k1 = min(K, k0 + kc);
    // Vector path: the next K step's tiles are read into registers while this one is multiplied.
    // k1 is K or a multiple of BK, so an aligned vector is all in or all out.
#define XV (BM * (BK / 4u) / (WROWS * WCOLS * SG))
#define WV (BN * (BK / 8u) / (WROWS * WCOLS * SG))
    vec4 ra[XV];
    uvec4 rb[WV];
#define LOAD_X(kb)                                                                                 \
    [[unroll]] for (uint l = 0u; l < XV; l++) {                                                    \
        uint i = tid + l * T, r = i / (BK / 4u), gr = row0 + r, gk = (kb) + (i % (BK / 4u)) * 4u;  \
        ra[l] = (i < BM * (BK / 4u) && gr < M && gk < k1) ? x4[(OFF_A + gr * K + gk) >> 2] : vec4(0.0); \
    }
#define LOAD_W(kb)                                                                                 \
    [[unroll]] for (uint l = 0u; l < WV; l++) {                                                    \
        uint i = tid + l * T, r = i / (BK / 8u), gc = col0 + r, gk = (kb) + (i % (BK / 8u)) * 8u;  \
        rb[l] = (i < BN * (BK / 8u) && gc < N && gk < k1) ? WLOAD8(OFF_B + gc * K + gk) : uvec4(0u); \
    }
    if (k0 < k1) {
        if (xvec) { LOAD_X(k0) }
        if (wvec) { LOAD_W(k0) }
    }
    for (uint kb = k0; kb < k1; kb += BK) {
        // x tile -> f16
        if (xvec) {
            [[unroll]] for (uint l = 0u; l < XV; l++) {
                uint i = tid + l * T;
                if (i >= BM * (BK / 4u)) break;
                uint s = (i / (BK / 4u)) * SK + (i % (BK / 4u)) * 4u;
                As[s] = float16_t(ra[l].x);
                As[s + 1u] = float16_t(ra[l].y);
                As[s + 2u] = float16_t(ra[l].z);
                As[s + 3u] = float16_t(ra[l].w);
            }
        } else {
            for (uint i = tid; i < BM * BK; i += T) {
                uint r = i / BK, c = i % BK, gr = row0 + r, gk = kb + c;
                As[r * SK + c] = float16_t((gr < M && gk < k1) ? x[OFF_A + gr * K + gk] : 0.0);
            }
        }
        // W tile: row n of W is column n of B (column-major B with stride SK)
        if (wvec) {
            [[unroll]] for (uint l = 0u; l < WV; l++) {
                uint i = tid + l * T;
                if (i >= BN * (BK / 8u)) break;
                uint s = (i / (BK / 8u)) * SK + (i % (BK / 8u)) * 8u;
                f16vec2 h0 = wpair(rb[l].x), h1 = wpair(rb[l].y), h2 = wpair(rb[l].z), h3 = wpair(rb[l].w);
                Bs[s] = h0.x;
                Bs[s + 1u] = h0.y;
                Bs[s + 2u] = h1.x;
                Bs[s + 3u] = h1.y;
                Bs[s + 4u] = h2.x;
                Bs[s + 5u] = h2.y;
                Bs[s + 6u] = h3.x;
                Bs[s + 7u] = h3.y;
            }
        } else {
            for (uint i = tid; i < BN * BK; i += T) {
                uint r = i / BK, c = i % BK, gc = col0 + r, gk = kb + c;
                Bs[r * SK + c] = float16_t((gc < N && gk < k1) ? wload(OFF_B + gc * K + gk) : 0.0);
            }
        }
        barrier();
        if (kb + BK < k1) { // the next tiles' loads overlap this step's matrix products
            if (xvec) { LOAD_X(kb + BK) }
            if (wvec) { LOAD_W(kb + BK) }
        }
        [[unroll]] for (uint kk = 0u; kk < BK; kk += 16u) {
            CMA a[FM];
            [[unroll]] for (uint i = 0u; i < FM; i++)
                coopMatLoad(a[i], As, (wr * WM + i * 16u) * SK + kk, SK, gl_CooperativeMatrixLayoutRowMajor);
            [[unroll]] for (uint j = 0u; j < FN; j++) {
                CMB b;
                coopMatLoad(b, Bs, (wc * WN + j * 16u) * SK + kk, SK, gl_CooperativeMatrixLayoutColumnMajor);
                [[unroll]] for (uint i = 0u; i < FM; i++) acc[i * FN + j] = coopMatMulAdd(a[i], b, acc[i * FN + j]);
            }
        }
        barrier();
    }

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

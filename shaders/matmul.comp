#version 450
#extension GL_GOOGLE_include_directive : require
// MATMUL (prefill): y[M, N] = x[M, K] W[N, K]^T (+ bias), tiled through shared memory.
// 256 invocations as a 16 x 16 grid; each computes a TM x TM block of the BM x BM output tile:
// rows (ty + 16 i) * 4 + r and columns (tx + 16 j) * 4 + c, i, j < TM / 4, r, c < 4, so its
// shared-memory reads are vec4s, broadcast (rows) or consecutive (columns) across a subgroup:
// one 16-byte read feeds 4 (TM = 4) or 8 (TM = 8) FMAs per element.
// TM = 4 (64 x 64 tiles) for small M, TM = 8 (128 x 128 tiles) when M is large (-DBIG).
// The next K step's tiles are read from memory into registers while this one is multiplied.
// u[0] = M, u[1] = N (columns in this dispatch), u[2] = K, u[3] = has bias,
// u[4] = n0 (first output column: the weight and bias bindings start at row n0), u[5] = y row stride,
// u[6]: bit 0 = x rows are vec4-aligned (K % 4 == 0 and the binding offset too), bit 1 = W rows
// are 8-element aligned: then the tile loads are vectors, else scalars.
// Split K (few output tiles, long K): u[7] = splits, gl_WorkGroupID.z = split; split z sums its
// share of K into y + z * u[8] and eltwise.comp (op 5) adds the partial products up.
#include "common.glsl"
#define W_BINDING 2
#include "wload.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) writeonly buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer X4 { vec4 x4[]; };
layout(std430, binding = 3) readonly buffer Bi { float bias[]; };

#ifdef BIG
#define TM 8
#else
#define TM 4
#endif
#define TV (TM / 4)
#define BM (16 * TM)
#define BK 16
// k-major tiles of vec4s; one vec4 of padding per row spreads the transposing stores over banks
shared vec4 As[BK][BM / 4 + 1];
shared vec4 Bs[BK][BM / 4 + 1];

// vector path: x as BM rows x 4 vec4 (TV per invocation), W as BM rows x 2 groups of 8
#define AV (BM * BK / 4 / 256)
#define BV (BM * BK / 8 / 256 > 0 ? BM * BK / 8 / 256 : 1)

void main() {
    uint M = pc.u[0], N = pc.u[1], K = pc.u[2];
    uint tid = gl_LocalInvocationID.x, tx = tid % 16u, ty = tid / 16u;
    uint row0 = gl_WorkGroupID.y * BM, col0 = gl_WorkGroupID.x * BM;
    bool xvec = (pc.u[6] & 1u) != 0u, wvec = (pc.u[6] & 2u) != 0u;
    vec4 acc[TM][TV];
    [[unroll]] for (int i = 0; i < TM; i++) [[unroll]] for (int j = 0; j < TV; j++) acc[i][j] = vec4(0.0);

    uint ksplit = max(pc.u[7], 1u), kc = ((K + ksplit - 1u) / ksplit + BK - 1u) / BK * BK;
    uint k0 = gl_WorkGroupID.z * kc, k1 = min(K, k0 + kc);

    // registers for the next tiles (vector path); k1 is K or a multiple of BK, so an aligned
    // vector is all in or all out
    vec4 ra[AV], rlo[BV], rhi[BV];
    bool bact = tid < BM * 2u; // the W vector loads need BM * 2 invocations
    if (xvec || wvec) {
        [[unroll]] for (uint l = 0u; l < AV; l++) ra[l] = vec4(0.0);
        [[unroll]] for (uint l = 0u; l < BV; l++) rlo[l] = rhi[l] = vec4(0.0);
    }
#define LOAD_X(kb)                                                                                 \
    [[unroll]] for (uint l = 0u; l < AV; l++) {                                                    \
        uint idx = tid + l * 256u, r = idx / 4u, gr = row0 + r, gk = (kb) + (idx % 4u) * 4u;       \
        ra[l] = (gr < M && gk < k1) ? x4[(OFF_A + gr * K + gk) >> 2] : vec4(0.0);                  \
    }
#define LOAD_W(kb)                                                                                 \
    [[unroll]] for (uint l = 0u; l < BV; l++) {                                                    \
        uint idx = tid + l * 256u, r = idx / 2u, gc = col0 + r, gk = (kb) + (idx % 2u) * 8u;       \
        if (bact && gc < N && gk < k1) wload8(OFF_B + gc * K + gk, rlo[l], rhi[l]);                \
        else rlo[l] = rhi[l] = vec4(0.0);                                                          \
    }
    if (k0 < k1) {
        if (xvec) { LOAD_X(k0) }
        if (wvec) { LOAD_W(k0) }
    }
    for (uint kb = k0; kb < k1; kb += BK) {
        if (xvec) {
            [[unroll]] for (uint l = 0u; l < AV; l++) {
                uint idx = tid + l * 256u, r = idx / 4u, c = (idx % 4u) * 4u;
                As[c][r >> 2][r & 3u] = ra[l].x;
                As[c + 1u][r >> 2][r & 3u] = ra[l].y;
                As[c + 2u][r >> 2][r & 3u] = ra[l].z;
                As[c + 3u][r >> 2][r & 3u] = ra[l].w;
            }
        } else { // consecutive invocations read consecutive k of one row: coalesced along K
            [[unroll]] for (uint l = 0u; l < BM * BK / 256u; l++) {
                uint idx = tid + l * 256u, r = idx / BK, c = idx % BK, gr = row0 + r, gk = kb + c;
                As[c][r >> 2][r & 3u] = (gr < M && gk < k1) ? x[OFF_A + gr * K + gk] : 0.0;
            }
        }
        if (wvec) {
            if (bact) {
                [[unroll]] for (uint l = 0u; l < BV; l++) {
                    uint idx = tid + l * 256u, r = idx / 2u, c = (idx % 2u) * 8u;
                    [[unroll]] for (uint q = 0u; q < 4u; q++) {
                        Bs[c + q][r >> 2][r & 3u] = rlo[l][q];
                        Bs[c + 4u + q][r >> 2][r & 3u] = rhi[l][q];
                    }
                }
            }
        } else {
            [[unroll]] for (uint l = 0u; l < BM * BK / 256u; l++) {
                uint idx = tid + l * 256u, r = idx / BK, c = idx % BK, gc = col0 + r, gk = kb + c;
                Bs[c][r >> 2][r & 3u] = (gc < N && gk < k1) ? wload(OFF_B + gc * K + gk) : 0.0;
            }
        }
        barrier();
        if (kb + BK < k1) { // the next tiles' loads overlap this step's FMAs
            if (xvec) { LOAD_X(kb + BK) }
            if (wvec) { LOAD_W(kb + BK) }
        }
        [[unroll]] for (uint k = 0u; k < BK; k++) {
            vec4 a[TV], b[TV];
            [[unroll]] for (uint i = 0u; i < TV; i++) a[i] = As[k][ty + 16u * i];
            [[unroll]] for (uint j = 0u; j < TV; j++) b[j] = Bs[k][tx + 16u * j];
            [[unroll]] for (uint i = 0u; i < TV; i++)
                [[unroll]] for (uint r = 0u; r < 4u; r++)
                    [[unroll]] for (uint j = 0u; j < TV; j++) acc[i * 4u + r][j] = fma(vec4(a[i][r]), b[j], acc[i * 4u + r][j]);
        }
        barrier();
    }
    bool hb = pc.u[3] != 0u;
    uint ybase = OFF_D + gl_WorkGroupID.z * pc.u[8] + pc.u[4];
    [[unroll]] for (uint i = 0u; i < TV; i++) {
        [[unroll]] for (uint r = 0u; r < 4u; r++) {
            uint gr = row0 + (ty + 16u * i) * 4u + r;
            if (gr >= M) continue;
            [[unroll]] for (uint j = 0u; j < TV; j++) {
                [[unroll]] for (uint c = 0u; c < 4u; c++) {
                    uint gc = col0 + (tx + 16u * j) * 4u + c;
                    if (gc >= N) continue;
                    float v = acc[i * 4u + r][j][c];
                    if (hb) v += bias[OFF_C + gc];
                    y[ybase + gr * pc.u[5] + gc] = v;
                }
            }
        }
    }
}

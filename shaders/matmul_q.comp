#version 450
#extension GL_GOOGLE_include_directive : require
// MATMUL (prefill) with a block-quantised W (W_Q8_0, W_Q4_0, W_Q4_K, W_Q6_K; wquant.glsl):
// matmul.comp's tiling, but each W tile is dequantised into shared memory 8 elements at a time
// (a row's 16 k are two loads; K is whole blocks of 32 or 256, so a load never crosses a block
// or the split-K boundary). The rest as matmul.comp:
// y[M, N] = x[M, K] W[N, K]^T (+ bias), tiled through shared memory.
// 256 invocations as a 16 x 16 grid; each computes a TM x TM block of the BM x BM output tile,
// strided by 16 so its shared-memory reads are broadcasts (rows) or consecutive (columns).
// TM = 4 (64 x 64 tiles) for small M, TM = 8 (128 x 128 tiles) when M is large (-DBIG).
// u[0] = M, u[1] = N (columns in this dispatch), u[2] = K, u[3] = has bias,
// u[4] = n0 (first output column: the weight and bias bindings start at row n0), u[5] = y row stride.
// Split K (few output tiles, long K): u[7] = splits, gl_WorkGroupID.z = split; split z sums its
// share of K into y + z * u[8] and eltwise.comp (op 5) adds the partial products up.
// QTILE (LOOM_VK_CM_QTILE=1 on a device without cooperative matrices: lavapipe's check of
// qtile.glsl, the decoders of the tensor-core in-tile variant): K 32 at a time, and each W row's 32
// weights of a step decoded together by qt_load / qt_dec (the first BM invocations, a row each).
// MOE (matmul_moe_*: the prefill expert products of a MOE node, vk_record.c rec_moe; any weight
// type, 64 x 64 tiles, no split): W is a stack [E, N, K]; the routed slots were grouped by expert
// by moe_group.comp into binding 4 (uint, from OFF_E): the slots in expert order, then at u[11]
// a tile table of (expert, first, end) positions in that order, one entry per gl_WorkGroupID.y
// (expert ~0u: no tile). A tile's rows are the slots [first, min(first + 64, end)): x row
// slot / k (u[10] = 0: gate, up on x [S, K]) or slot (u[10] = 1: down on h [S*k, K]), written to
// y row slot; u[9] = k; u[6] = 1: W rows 8-element aligned (else scalar W loads, any K).
#include "common.glsl"
#define W_BINDING 2
#include "wload.glsl"
#ifdef QTILE
#include "qtile.glsl"
#endif
layout(local_size_x = 256) in;
layout(std430, binding = 0) writeonly buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(std430, binding = 3) readonly buffer Bi { float bias[]; };
#ifdef MOE
layout(std430, binding = 4) readonly buffer G { uint grp[]; };
#endif

#ifdef BIG
#define TM 8
#else
#define TM 4
#endif
#define BM (16 * TM)
#ifdef QTILE
#define BK 32
#else
#define BK 16
#endif
#define LOADS (BM * BK / 256)
shared float As[BK][BM];
shared float Bs[BK][BM];
#ifdef MOE
shared uint xrow[BM], yrow[BM]; // the tile's gathered x rows and y rows
#endif

void main() {
    uint M = pc.u[0], N = pc.u[1], K = pc.u[2];
    uint tid = gl_LocalInvocationID.x, tx = tid % 16u, ty = tid / 16u;
    uint row0 = gl_WorkGroupID.y * BM, col0 = gl_WorkGroupID.x * BM;
#ifdef MOE
    uint te = OFF_E + pc.u[11] + 3u * gl_WorkGroupID.y, ex = grp[te];
    if (ex == 0xffffffffu) return; // past the last tile (uniform: the whole workgroup leaves)
    uint p0 = grp[te + 1u], wexp = OFF_B + ex * N * K;
    M = min(grp[te + 2u] - p0, BM);
    row0 = 0u;
    if (tid < M) {
        uint sl = grp[OFF_E + p0 + tid];
        xrow[tid] = pc.u[10] != 0u ? sl : sl / pc.u[9];
        yrow[tid] = sl;
    }
    barrier();
#define XROW(r) xrow[r]
#define WROW(c) (wexp + (c) * K)
#else
#define XROW(r) (r)
#define WROW(c) (OFF_B + (c) * K)
#endif
    float acc[TM][TM];
    [[unroll]] for (int i = 0; i < TM; i++) [[unroll]] for (int j = 0; j < TM; j++) acc[i][j] = 0.0;

    uint ksplit = max(pc.u[7], 1u), kc = ((K + ksplit - 1u) / ksplit + BK - 1u) / BK * BK;
    uint k0 = gl_WorkGroupID.z * kc, k1 = min(K, k0 + kc);
    for (uint kb = k0; kb < k1; kb += BK) {
        // consecutive invocations read consecutive k of one row: coalesced along K
        [[unroll]] for (uint l = 0u; l < LOADS; l++) {
            uint idx = tid + l * 256u, r = idx / BK, c = idx % BK;
            uint gr = row0 + r, gk = kb + c;
            As[c][r] = (gr < M && gk < k1) ? x[OFF_A + XROW(gr) * K + gk] : 0.0;
        }
#ifdef QTILE
        // W: a row of 32 per invocation (K is whole blocks: a step is all in or all out)
        if (tid < BM) {
            uint gc = col0 + tid;
            vec4 v[8];
            if (gc < N && kb < k1) {
                uint e = WROW(gc) + kb, r[QTW];
                qt_load(e, r);
                qt_dec(e, r, v);
            } else {
                [[unroll]] for (uint q = 0u; q < 8u; q++) v[q] = vec4(0.0);
            }
            [[unroll]] for (uint q = 0u; q < 8u; q++)
                [[unroll]] for (uint i = 0u; i < 4u; i++) Bs[4u * q + i][tid] = v[q][i];
        }
#else
        // W: BM rows x two 8-element groups
        for (uint idx = tid; idx < BM * 2u; idx += 256u) {
            uint r = idx >> 1, c8 = (idx & 1u) * 8u, gc = col0 + r, gk = kb + c8;
            vec4 lo = vec4(0.0), hi = vec4(0.0);
#ifdef MOE
            if (gc < N && gk < k1 && pc.u[6] != 0u) {
                wload8(WROW(gc) + gk, lo, hi);
            } else if (gc < N) { // scalar: K need not be a multiple of 8
                [[unroll]] for (uint i = 0u; i < 4u; i++) {
                    lo[i] = gk + i < k1 ? wload(WROW(gc) + gk + i) : 0.0;
                    hi[i] = gk + 4u + i < k1 ? wload(WROW(gc) + gk + 4u + i) : 0.0;
                }
            }
#else
            if (gc < N && gk < k1) wload8(WROW(gc) + gk, lo, hi);
#endif
            [[unroll]] for (uint i = 0u; i < 4u; i++) {
                Bs[c8 + i][r] = lo[i];
                Bs[c8 + 4u + i][r] = hi[i];
            }
        }
#endif
        barrier();
#ifdef MOE
        // a tile of an expert's few slots: invocations whose rows are all past them skip the FMAs
        // (whole subgroups of 16 x 2 ty; lavapipe runs every FMA)
        if (ty < M)
#endif
        [[unroll]] for (uint k = 0u; k < BK; k++) {
            float a[TM], b[TM];
            [[unroll]] for (uint i = 0u; i < TM; i++) a[i] = As[k][ty + 16u * i];
            [[unroll]] for (uint j = 0u; j < TM; j++) b[j] = Bs[k][tx + 16u * j];
            [[unroll]] for (uint i = 0u; i < TM; i++)
                [[unroll]] for (uint j = 0u; j < TM; j++) acc[i][j] = fma(a[i], b[j], acc[i][j]);
        }
        barrier();
    }
    bool hb = pc.u[3] != 0u;
    [[unroll]] for (uint i = 0u; i < TM; i++) {
        uint r = row0 + ty + 16u * i;
        if (r >= M) continue;
        [[unroll]] for (uint j = 0u; j < TM; j++) {
            uint c = col0 + tx + 16u * j;
            if (c >= N) continue;
            float v = acc[i][j];
            if (hb) v += bias[OFF_C + c];
#ifdef MOE
            y[OFF_D + yrow[r] * pc.u[5] + c] = v;
#else
            y[OFF_D + gl_WorkGroupID.z * pc.u[8] + r * pc.u[5] + pc.u[4] + c] = v;
#endif
        }
    }
}

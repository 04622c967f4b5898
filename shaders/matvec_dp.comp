#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#if defined(DP_IDOT)
#extension GL_EXT_spirv_intrinsics : require
#endif
// Decode GEMV for block-quantised weights on integer dot products (LOOM_VK_GEMV_Q=dp*): y[M, N] =
// x[M, K] W[N, K]^T (+ bias) (+ residual), M <= 8, with x already quantised to 8 bits by quantx.comp
// (32 int8 q per block, d, the halves' sums X0, X1, the sum of squares SS). The work split is
// matvec_qb.comp's: an invocation takes units (32 or 64 weights, qbunit.glsl) of R rows at once;
// per unit and row the weights come as byte codes c with w = sc * (c - C_OFF) + mn per 16, turned
// into signed bytes c - C_OFF (or the IQ4 table's values), and
//   sum_i w_i x_i ~ d (sc[0] sum_{i<16} (c_i - C_OFF) q_i + sc[1] sum_{i>=16} ...) + mn[0] X0 + mn[1] X1
// with the integer sums from 4-byte dot products: OpSDot (SPV_KHR_integer_dot_product, written
// through GL_EXT_spirv_intrinsics so that glslang 12 compiles it) in the DP_IDOT variants, shifts and
// integer multiply-adds otherwise (devices without shaderIntegerDotProduct, LOOM_VK_NO_IDOT=1).
// Error against f32 x: |x - d q| <= d / 2 per element, so at most sum_b (d_b / 2) sum_{i in b} |w_i|
// per output, beside f32 rounding (test_vulkan_quant derives its bound from this).
// Bindings: 0 = y, 1 = x quantised (uvec4 q words, then the vec4 headers h from u[10]), 2 = W (bytes),
// 3 = bias, 4 = the next RMSNORM's weight (EPI 2), 5 = residual, 6 = (EPI) the output quantised: its q
// words, headers from f[1] and block counters from f[2] (uint index; both as bits). Push constants
// otherwise as matvec.comp. Spec constants: 0 = workgroup size, 1 = M, 2 = row groups per workgroup
// (NG), 3 = XMODE | R << 2 | EPI << 5 (| bit 7: Q4_K / Q5_K / Q6_K units of one sub-block, bit 8: of half-pair
// units, qbunit.glsl unit_hp, bit 9: two of them a pass; vk_record.c chooses): XMODE 1 (a folded RMSNORM, applied by quantx.comp but for its
// 1 / rms) multiplies the finished sum by 1 / rms from the blocks' SS; 2 (SWIGLU) needs nothing here.
// EPI (DP_EPI builds, matvec_dp(i)e_*; LOOM_VK_QX_FOLD, vk_record.c): y is also written quantised for
// the next dp GEMV, as quantx.comp would write it (1: y as it is; 2: y times the norm weight of an
// RMSNORM folded into that GEMV; SS is always the raw y's; 3: DP_GU below). A workgroup owns NG * R
// rows, not whole 32-blocks of y, so per block a counter adds up the rows written (device-scope
// atomics after a buffer barrier); the workgroup that brings it to 32 reads the block back (coherent)
// and quantises it for all M rows, then resets the counter to 0 for the next dispatch (the recorder
// zeroes the counters once, when it allocates them).
// DP_GU (matvec_dp(i)gu_*, EPI 3): the gate and up GEMVs of a SWIGLU in one dispatch, gate's W at
// binding 2 and up's (the same type) at 3 (no bias), up's y at binding 4: an invocation takes R rows of
// each from the same x loads, and the epilogue quantises silu(gate) * up (quantx.comp's XMODE 2) for
// the down projection.
#include "common.glsl"
#define W_BINDING 2
#if defined(DP_GU)
layout(std430, binding = 3) readonly buffer WBU { uint wqu[]; };
layout(std430, binding = 3) readonly buffer WBU16 { uvec4 wqu4[]; };
bool gu_up = false; // the decoder reads up's W (binding 3), else gate's
#define WQ(i) (gu_up ? wqu[i] : wq[i])
#define WQ4(i) (gu_up ? wqu4[i] : wq4[i])
#define W_OFF_CUR (gu_up ? OFF_C : OFF_B)
#endif
#include "wload.glsl"
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint NM = 1;
layout(constant_id = 2) const uint NG = 4;
layout(constant_id = 3) const uint XSPEC = 0;
const uint XMODE = XSPEC & 3u;
const uint RS = (XSPEC >> 2) & 7u;
const uint R = RS == 4u ? 4u : RS == 2u ? 2u : 1u;
const uint NU = ((XSPEC >> 9) & 1u) != 0u ? 2u : 1u; // half-pair units a pass (bit 9)
#if defined(DP_GU)
const uint RR = 2u * R; // rows an invocation sums: R of gate, then R of up
#else
const uint RR = R;
#endif
layout(std430, binding = 1) readonly buffer Q { uvec4 xq[]; };
layout(std430, binding = 1) readonly buffer H { vec4 xh[]; };
#if !defined(DP_GU)
layout(std430, binding = 3) readonly buffer Bi { float bias[]; };
#endif
layout(std430, binding = 5) readonly buffer Rs { float res[]; };
#if defined(DP_EPI)
// (only these builds declare bindings 4 and 6 and the coherent y: the validation layer counts every
// declared access, dead or not)
const uint EPI = (XSPEC >> 5) & 3u;
layout(std430, binding = 0) coherent buffer YC { float yc[]; }; // written and read back coherently
layout(std430, binding = 6) writeonly buffer QO { uvec4 qo[]; };
layout(std430, binding = 6) writeonly buffer HO { vec4 ho[]; };
layout(std430, binding = 6) coherent buffer CN { uint cnt[]; };
#if defined(DP_GU)
layout(std430, binding = 4) coherent buffer YU { float yu[]; }; // up's y
#else
layout(std430, binding = 4) readonly buffer NW { float nw[]; };
#endif
#else
const uint EPI = 0u;
layout(std430, binding = 0) writeonly buffer Y { float y[]; };
#endif

#include "qbunit.glsl"

#if defined(DP_IDOT)
// OpSDot (4450) of two words as 4 packed signed bytes (PackedVectorFormat4x8Bit = 0); capabilities
// DotProduct (6019), DotProductInput4x8BitPacked (6018)
spirv_instruction(extensions = ["SPV_KHR_integer_dot_product"], capabilities = [6019, 6018], id = 4450)
int sdot_packed(int a, int b, spirv_literal int fmt);
int dot4(uint a, uint b) { return sdot_packed(int(a), int(b), 0); }
#else
int dot4(uint a, uint b) {
    ivec4 u = ivec4(uvec4(a) << uvec4(24u, 16u, 8u, 0u)) >> 24;
    ivec4 v = ivec4(uvec4(b) << uvec4(24u, 16u, 8u, 0u)) >> 24;
    return u.x * v.x + u.y * v.y + u.z * v.z + u.w * v.w;
}
#endif

#if defined(C_TABLE)
shared uint kvb[16]; // the IQ4 values as bytes
#endif
// the four codes of word c as signed bytes c - C_OFF (or the IQ4 table's values)
uint sbytes(uint c) {
#if defined(C_TABLE)
    return kvb[c & 15u] | (kvb[(c >> 8) & 15u] << 8) | (kvb[(c >> 16) & 15u] << 16) | (kvb[c >> 24] << 24);
#elif defined(W_Q8_0)
    return c ^ 0x80808080u; // c = q + 128
#elif defined(C_MIN)
    return c; // codes < 128
#else
    // codes < 128: bytes c + 128 - C_OFF stay in [0, 255] (no borrow), and ^ 0x80 is then c - C_OFF
    return ((c | 0x80808080u) - uint(C_OFF) * 0x01010101u) ^ 0x80808080u;
#endif
}

const uint SSI = RR * 8u; // red's sums of squares from here
shared float red[64][RR * 8u + 8u]; // [subgroup][r * NM + m, then SSI + m: sum of squares]

#if defined(DP_EPI)
float silu(float g) { return g / (1.0 + exp(-g)); }
shared uint qdone[8], qnd; // the blocks of y this workgroup completed
// block b of row m of y quantised as quantx.comp does it (the same arithmetic: the same blocks)
void qblock(uint b, uint m) {
    uint o = OFF_D + m * pc.u[5] + pc.u[4] + b * 32u;
    vec4 v[8];
    float ss = 0.0;
    [[unroll]] for (uint j = 0u; j < 8u; j++) {
        v[j] = vec4(yc[o + 4u * j], yc[o + 4u * j + 1u], yc[o + 4u * j + 2u], yc[o + 4u * j + 3u]);
#if defined(DP_GU)
        uint e = m * pc.u[5] + pc.u[4] + b * 32u + 4u * j + OFF_E; // (ss stays 0, as in quantx.comp's XMODE 2)
        vec4 u = vec4(yu[e], yu[e + 1u], yu[e + 2u], yu[e + 3u]);
        v[j] = vec4(silu(v[j].x), silu(v[j].y), silu(v[j].z), silu(v[j].w)) * u;
#else
        ss += dot(v[j], v[j]);
        if (EPI == 2u) {
            uint e = OFF_E + b * 32u + 4u * j;
            v[j] *= vec4(nw[e], nw[e + 1u], nw[e + 2u], nw[e + 3u]);
        }
#endif
    }
    vec4 am = vec4(0.0);
    [[unroll]] for (uint j = 0u; j < 8u; j++) am = max(am, abs(v[j]));
    float amax = max(max(am.x, am.y), max(am.z, am.w));
    float d = amax / 127.0, id = amax > 0.0 ? 127.0 / amax : 0.0;
    uint w[8];
    [[unroll]] for (uint j = 0u; j < 8u; j++) {
        ivec4 c = clamp(ivec4(roundEven(v[j] * id)), ivec4(-127), ivec4(127));
        uvec4 bb = uvec4(c) & 0xffu;
        w[j] = bb.x | (bb.y << 8) | (bb.z << 16) | (bb.w << 24);
    }
    uint i = m * (pc.u[5] / 32u) + b;
    qo[OFF_Q + 2u * i] = uvec4(w[0], w[1], w[2], w[3]);
    qo[OFF_Q + 2u * i + 1u] = uvec4(w[4], w[5], w[6], w[7]);
    float x0 = dot(v[0] + v[1] + v[2] + v[3], vec4(1.0)), x1 = dot(v[4] + v[5] + v[6] + v[7], vec4(1.0));
    ho[OFF_Q + floatBitsToUint(pc.f[1]) + i] = vec4(d, x0, x1, ss);
}
#endif

void main() {
    uint N = pc.u[1], K = pc.u[2];
    const uint TPR = gl_WorkGroupSize.x / NG; // invocations per row group: a multiple of the subgroup
    uint t = gl_LocalInvocationID.x, g = t / TPR, lt = t % TPR;
#if defined(C_TABLE)
    if (t < 16u) kvb[t] = uint(int(KV_IQ4[t])) & 0xffu;
    barrier();
#endif
    uint n0 = (wg_linear() * NG + g) * R;
    const uint UB = QK / (32u * SU); // units per block
    uint U = K / (32u * SU), rowb = (K / QK) * QB, nb = K / 32u;
    float acc[RR * NM], ss[NM];
    [[unroll]] for (uint i = 0u; i < RR * NM; i++) acc[i] = 0.0;
    [[unroll]] for (uint m = 0u; m < NM; m++) ss[m] = 0.0;
    if (n0 < N) {
#if defined(W_Q4_K) || defined(W_Q5_K) || defined(W_Q6_K)
        if (HP) { // half-pair units (qbunit.glsl unit_hp): two x blocks' halves h
            // NU units a pass (XSPEC bit 9: 2), u0 and u0 + TPR: both units' loads are issued before
            // either's products (a unit past the row's end re-reads the last one and adds nothing)
            for (uint u0 = lt; u0 < U; u0 += NU * TPR) {
                uvec4 cw[NU * RR * 2u];
                vec2 sc[NU * RR], mn[NU * RR];
                [[unroll]] for (uint k = 0u; k < NU; k++) {
                    uint u = min(u0 + k * TPR, U - 1u), blk = u / UB, p = u % UB;
                    [[unroll]] for (uint r = 0u; r < RR; r++) {
                        uvec4 c[2];
#if defined(DP_GU)
                        gu_up = r >= R;
#endif
                        uint i = k * RR + r;
                        unit_hp(W_OFF_CUR + min(n0 + r % R, N - 1u) * rowb + blk * QB, p, c, sc[i], mn[i]);
                        cw[2u * i] = uvec4(sbytes(c[0].x), sbytes(c[0].y), sbytes(c[0].z), sbytes(c[0].w));
                        cw[2u * i + 1u] = uvec4(sbytes(c[1].x), sbytes(c[1].y), sbytes(c[1].z), sbytes(c[1].w));
                    }
                }
                [[unroll]] for (uint k = 0u; k < NU; k++) {
                    uint uk = u0 + k * TPR;
                    if (NU > 1u && uk >= U) break;
                    uint blk = uk / UB, p = uk % UB, h = p & 1u;
                    [[unroll]] for (uint m = 0u; m < NM; m++) {
                        uint xa = m * nb + blk * (QK / 32u) + hp_sub(p, 0u), xb = m * nb + blk * (QK / 32u) + hp_sub(p, 1u);
                        uvec4 qa = xq[OFF_A + 2u * xa + h], qb = xq[OFF_A + 2u * xb + h];
                        vec4 ha = xh[OFF_A + pc.u[10] + xa], hb = xh[OFF_A + pc.u[10] + xb];
                        if (XMODE == 1u && h == 0u) ss[m] += ha.w + hb.w; // each x block once
                        [[unroll]] for (uint r = 0u; r < RR; r++) {
                            uint i = k * RR + r;
                            uvec4 c0 = cw[2u * i], c1 = cw[2u * i + 1u];
                            int i0 = dot4(c0.x, qa.x) + dot4(c0.y, qa.y) + dot4(c0.z, qa.z) + dot4(c0.w, qa.w);
                            int i1 = dot4(c1.x, qb.x) + dot4(c1.y, qb.y) + dot4(c1.z, qb.z) + dot4(c1.w, qb.w);
                            float v = ha.x * sc[i].x * float(i0) + hb.x * sc[i].y * float(i1);
#if defined(C_MIN)
                            v += mn[i].x * (h == 0u ? ha.y : ha.z) + mn[i].y * (h == 0u ? hb.y : hb.z);
#endif
                            acc[r * NM + m] += v;
                        }
                    }
                }
            }
        } else
#endif
        for (uint u = lt; u < U; u += TPR) {
            uint blk = u / UB, p = u % UB;
            uvec4 cw[RR * 2u * SU];
            vec2 sc[RR * SU], mn[RR * SU];
            [[unroll]] for (uint r = 0u; r < RR; r++) { // rows past N read the last row, written nowhere
                uvec4 c[4];
                vec2 s1[2], m1[2];
#if defined(DP_GU)
                gu_up = r >= R;
#endif
                unit(W_OFF_CUR + min(n0 + r % R, N - 1u) * rowb + blk * QB, p, c, s1, m1);
                [[unroll]] for (uint i = 0u; i < 2u * SU; i++)
                    cw[r * 2u * SU + i] = uvec4(sbytes(c[i].x), sbytes(c[i].y), sbytes(c[i].z), sbytes(c[i].w));
                [[unroll]] for (uint i = 0u; i < SU; i++) {
                    sc[r * SU + i] = s1[i];
                    mn[r * SU + i] = m1[i];
                }
            }
            [[unroll]] for (uint m = 0u; m < NM; m++)
                [[unroll]] for (uint s = 0u; s < SU; s++) {
                    uint xb = m * nb + blk * (QK / 32u) + sub(p, s); // x's block
                    uvec4 q0 = xq[OFF_A + 2u * xb], q1 = xq[OFF_A + 2u * xb + 1u];
                    vec4 hd = xh[OFF_A + pc.u[10] + xb];
                    if (XMODE == 1u) ss[m] += hd.w;
                    [[unroll]] for (uint r = 0u; r < RR; r++) {
                        uint i = r * SU + s;
                        uvec4 c0 = cw[2u * i], c1 = cw[2u * i + 1u];
                        int i0 = dot4(c0.x, q0.x) + dot4(c0.y, q0.y) + dot4(c0.z, q0.z) + dot4(c0.w, q0.w);
                        int i1 = dot4(c1.x, q1.x) + dot4(c1.y, q1.y) + dot4(c1.z, q1.z) + dot4(c1.w, q1.w);
                        float v = hd.x * (sc[i].x * float(i0) + sc[i].y * float(i1));
#if defined(C_MIN)
                        v += mn[i].x * hd.y + mn[i].y * hd.z;
#endif
                        acc[r * NM + m] += v;
                    }
                }
        }
    }
    [[unroll]] for (uint i = 0u; i < RR * NM; i++) acc[i] = subgroupAdd(acc[i]);
    if (XMODE == 1u)
        [[unroll]] for (uint m = 0u; m < NM; m++) ss[m] = subgroupAdd(ss[m]);
    uint spr = TPR / gl_SubgroupSize; // subgroups per row group
    if (spr > 1u) {
        if (subgroupElect()) {
            [[unroll]] for (uint i = 0u; i < RR * NM; i++) red[gl_SubgroupID][i] = acc[i];
            [[unroll]] for (uint m = 0u; m < NM; m++) red[gl_SubgroupID][SSI + m] = ss[m];
        }
        barrier();
        if (lt == 0u) {
            uint s0 = g * spr;
            [[unroll]] for (uint i = 0u; i < RR * NM; i++) {
                float a = 0.0;
                for (uint k = 0u; k < spr; k++) a += red[s0 + k][i];
                acc[i] = a;
            }
            [[unroll]] for (uint m = 0u; m < NM; m++) {
                float q = 0.0;
                for (uint k = 0u; k < spr; k++) q += red[s0 + k][SSI + m];
                ss[m] = q;
            }
        }
    }
    if (lt == 0u) {
        [[unroll]] for (uint r = 0u; r < R; r++) {
            uint n = n0 + r;
            if (n >= N) break;
#if defined(DP_GU)
            [[unroll]] for (uint m = 0u; m < NM; m++) { // gate and up (no bias, no residual)
                float v = acc[r * NM + m], vu = acc[(R + r) * NM + m];
                if (XMODE == 1u) {
                    float rs = inversesqrt(ss[m] / float(K) + pc.f[0]);
                    v *= rs;
                    vu *= rs;
                }
                uint o = m * pc.u[5] + pc.u[4] + n;
                yc[OFF_D + o] = v;
                yu[OFF_E + o] = vu;
            }
#else
            float b = pc.u[3] != 0u ? bias[OFF_C + n] : 0.0;
            [[unroll]] for (uint m = 0u; m < NM; m++) {
                float v = acc[r * NM + m];
                if (XMODE == 1u) v *= inversesqrt(ss[m] / float(K) + pc.f[0]);
                v += b;
                uint o = m * pc.u[5] + pc.u[4] + n;
                if (pc.u[8] != 0u) v += res[OFF_S + o];
#if defined(DP_EPI)
                yc[OFF_D + o] = v;
#else
                y[OFF_D + o] = v;
#endif
            }
#endif
        }
    }
#if defined(DP_EPI)
    // y quantised for the next dp GEMV: count this workgroup's rows into their blocks' counters
    memoryBarrierBuffer();
    barrier();
    uint w0 = wg_linear() * NG * R, w1 = min(w0 + NG * R, N);
    uint cb = 4u * OFF_Q + floatBitsToUint(pc.f[2]);
    if (t == 0u) {
        uint nd = 0u;
        for (uint b = w0 / 32u; b * 32u < w1 && nd < 8u; b++) {
            uint add = min(w1, b * 32u + 32u) - max(w0, b * 32u);
            if (atomicAdd(cnt[cb + b], add) + add == 32u) qdone[nd++] = b;
        }
        qnd = nd;
    }
    barrier();
    memoryBarrierBuffer();
    uint k = t / NM, m = t % NM;
    if (k >= qnd) return;
    qblock(qdone[k], m);
    if (m == 0u) atomicExchange(cnt[cb + qdone[k]], 0u);
#endif
}

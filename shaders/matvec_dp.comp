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
// Bindings: 0 = y, 1 = q (uvec4), 2 = W (bytes), 3 = bias, 4 = h (vec4), 5 = residual. Push constants
// as matvec.comp. Spec constants: 0 = workgroup size, 1 = M, 2 = row groups per workgroup (NG),
// 3 = XMODE | R << 2: XMODE 1 (a folded RMSNORM, applied by quantx.comp but for its 1 / rms)
// multiplies the finished sum by 1 / rms from the blocks' SS; 2 (SWIGLU) needs nothing here.
#include "common.glsl"
#define W_BINDING 2
#include "wload.glsl"
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint NM = 1;
layout(constant_id = 2) const uint NG = 4;
layout(constant_id = 3) const uint XSPEC = 0;
const uint XMODE = XSPEC & 3u;
const uint R = (XSPEC >> 2) == 4u ? 4u : (XSPEC >> 2) == 2u ? 2u : 1u;
layout(std430, binding = 0) writeonly buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer Q { uvec4 xq[]; };
layout(std430, binding = 3) readonly buffer Bi { float bias[]; };
layout(std430, binding = 4) readonly buffer H { vec4 xh[]; };
layout(std430, binding = 5) readonly buffer Rs { float res[]; };

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

shared float red[64][40]; // [subgroup][r * NM + m, then 32 + m: sum of squares]

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
    float acc[R * NM], ss[NM];
    [[unroll]] for (uint i = 0u; i < R * NM; i++) acc[i] = 0.0;
    [[unroll]] for (uint m = 0u; m < NM; m++) ss[m] = 0.0;
    if (n0 < N) {
        for (uint u = lt; u < U; u += TPR) {
            uint blk = u / UB, p = u % UB;
            uvec4 cw[R * 2u * SU];
            vec2 sc[R * SU], mn[R * SU];
            [[unroll]] for (uint r = 0u; r < R; r++) { // rows past N read the last row, written nowhere
                uvec4 c[2 * SU];
                vec2 s1[SU], m1[SU];
                unit(W_OFF + min(n0 + r, N - 1u) * rowb + blk * QB, p, c, s1, m1);
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
                    vec4 hd = xh[OFF_E + xb];
                    if (XMODE == 1u) ss[m] += hd.w;
                    [[unroll]] for (uint r = 0u; r < R; r++) {
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
    [[unroll]] for (uint i = 0u; i < R * NM; i++) acc[i] = subgroupAdd(acc[i]);
    if (XMODE == 1u)
        [[unroll]] for (uint m = 0u; m < NM; m++) ss[m] = subgroupAdd(ss[m]);
    uint spr = TPR / gl_SubgroupSize; // subgroups per row group
    if (spr > 1u) {
        if (subgroupElect()) {
            [[unroll]] for (uint i = 0u; i < R * NM; i++) red[gl_SubgroupID][i] = acc[i];
            [[unroll]] for (uint m = 0u; m < NM; m++) red[gl_SubgroupID][32u + m] = ss[m];
        }
        barrier();
        if (lt == 0u) {
            uint s0 = g * spr;
            [[unroll]] for (uint i = 0u; i < R * NM; i++) {
                float a = 0.0;
                for (uint k = 0u; k < spr; k++) a += red[s0 + k][i];
                acc[i] = a;
            }
            [[unroll]] for (uint m = 0u; m < NM; m++) {
                float q = 0.0;
                for (uint k = 0u; k < spr; k++) q += red[s0 + k][32u + m];
                ss[m] = q;
            }
        }
    }
    if (lt == 0u) {
        [[unroll]] for (uint r = 0u; r < R; r++) {
            uint n = n0 + r;
            if (n >= N) break;
            float b = pc.u[3] != 0u ? bias[OFF_C + n] : 0.0;
            [[unroll]] for (uint m = 0u; m < NM; m++) {
                float v = acc[r * NM + m];
                if (XMODE == 1u) v *= inversesqrt(ss[m] / float(K) + pc.f[0]);
                v += b;
                uint o = m * pc.u[5] + pc.u[4] + n;
                if (pc.u[8] != 0u) v += res[OFF_S + o];
                y[OFF_D + o] = v;
            }
        }
    }
}

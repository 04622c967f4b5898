// Block-quantised weights (core/qblock.h: Q8_0, Q4_0, Q4_K, Q6_K, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K,
// Q5_K, IQ4_NL, IQ4_XS), included by wload.glsl.
// The raw blocks are bound as uint words and read with byte addressing: blocks are 34/18/144/210/...
// bytes, so neither they nor their f16 scales are word aligned in general. The binding's element
// offset (W_OFF) is in bytes. The shaders index weights as W_OFF + row * K + k like any other
// type; since rows are whole blocks, element f = e - W_OFF lies in block f / QK at byte
// W_OFF + (f / QK) * QB. Values are computed in the order loom_dequant_row uses (same products,
// no fma contraction: `precise`), so a dequantised element is bit-identical to the CPU's.
layout(std430, binding = W_BINDING) readonly buffer WBQ { uint wq[]; };
#if W_BINDING == 1
#define W_OFF OFF_A
#else
#define W_OFF OFF_B
#endif
#define W_QUANT 1
// Every read of the words goes through WQ (and qbunit.glsl's WQ4): a shader reading two weights of one
// type (matvec_dp.comp DP_GU) defines them to pick the binding
#ifndef WQ
#define WQ(i) wq[i]
#endif

#if defined(W_Q8_0)
#define QK 32u
#define QB 34u
#elif defined(W_Q4_0)
#define QK 32u
#define QB 18u
#elif defined(W_Q4_K)
#define QK 256u
#define QB 144u
#elif defined(W_Q6_K)
#define QK 256u
#define QB 210u
#elif defined(W_Q4_1)
#define QK 32u
#define QB 20u
#elif defined(W_Q5_0)
#define QK 32u
#define QB 22u
#elif defined(W_Q5_1)
#define QK 32u
#define QB 24u
#elif defined(W_IQ4_NL)
#define QK 32u
#define QB 18u
#elif defined(W_Q2_K)
#define QK 256u
#define QB 84u
#elif defined(W_Q3_K)
#define QK 256u
#define QB 110u
#elif defined(W_Q5_K)
#define QK 256u
#define QB 176u
#elif defined(W_IQ4_XS)
#define QK 256u
#define QB 136u
#else
#error "unknown quantised weight type"
#endif

uint qbyte(uint a) { return (WQ(a >> 2) >> ((a & 3u) * 8u)) & 0xffu; }
// f16 at byte a (any alignment: a chunk of rows may start at an odd word half)
float qhalf(uint a) {
    uint v = (a & 3u) == 3u ? (qbyte(a) | (qbyte(a + 1u) << 8)) : (WQ(a >> 2) >> ((a & 3u) * 8u));
    return unpackHalf2x16(v & 0xffffu).x;
}
// 8 bytes from byte a, little-endian; reads only the words that hold them. No branch: neighbouring
// Q4_0/Q8_0 blocks (18/34 bytes) alternate between aligned and not, so a branch diverges; the
// third word is a predicated load, and (x << 1) << (31 - s) is x << (32 - s) that is 0 at s = 0.
uvec2 qbytes8(uint a) {
    uint i = a >> 2, s = (a & 3u) * 8u;
    uint x0 = WQ(i), x1 = WQ(i + 1u), x2 = s != 0u ? WQ(i + 2u) : 0u;
    return uvec2((x0 >> s) | ((x1 << 1) << (31u - s)), (x1 >> s) | ((x2 << 1) << (31u - s)));
}
uvec4 qb4(uint x) { return (uvec4(x) >> uvec4(0u, 8u, 16u, 24u)) & 0xffu; }
// the IQ4_NL / IQ4_XS code values (loom_iq4nl_values)
const float KV_IQ4[16] = float[16](-127.0, -104.0, -83.0, -65.0, -49.0, -35.0, -22.0, -10.0, 1.0, 13.0, 25.0, 38.0,
                                   53.0, 69.0, 89.0, 113.0);
vec4 kv4(uvec4 q) { return vec4(KV_IQ4[q.x], KV_IQ4[q.y], KV_IQ4[q.z], KV_IQ4[q.w]); }
// Q4_K / Q5_K: 6-bit scale and minimum of sub-block j from the 12 bytes at a
void scale_min_k4(uint a, uint j, out uint sc, out uint m) {
    if (j < 4u) {
        sc = qbyte(a + j) & 63u;
        m = qbyte(a + 4u + j) & 63u;
    } else {
        uint b8 = qbyte(a + 4u + j);
        sc = (b8 & 15u) | ((qbyte(a + j - 4u) >> 6) << 4);
        m = (b8 >> 4) | ((qbyte(a + j) >> 6) << 4);
    }
}
ivec4 qs4(uint x) { return ivec4(uvec4(x) << uvec4(24u, 16u, 8u, 0u)) >> 24; } // signed bytes

// elements e..e+7 (e - W_OFF a multiple of 8: never crosses a block)
void wload8(uint e, out vec4 lo, out vec4 hi) {
    uint f = e - W_OFF, base = W_OFF + (f / QK) * QB, w = f % QK;
#if defined(W_Q8_0)
    float d = qhalf(base);
    uvec2 q = qbytes8(base + 2u + w);
    lo = vec4(qs4(q.x)) * d;
    hi = vec4(qs4(q.y)) * d;
#elif defined(W_Q4_0)
    // elements 0..15 are the low nibbles of qs[0..15], 16..31 the high ones
    float d = qhalf(base);
    uvec2 q = qbytes8(base + 2u + (w & 8u));
    uint sh = (w & 16u) >> 2;
    lo = (vec4((qb4(q.x) >> sh) & 15u) - 8.0) * d;
    hi = (vec4((qb4(q.y) >> sh) & 15u) - 8.0) * d;
#elif defined(W_Q4_K) || defined(W_Q5_K)
    // 8 sub-blocks of 32 with 6-bit scale/min; qs[32c + l] holds element 64c + l (low nibble)
    // and 64c + 32 + l (high nibble); Q5_K: the 5th bit of element 32j + l is bit j of qh[l]
    float d = qhalf(base), dmin = qhalf(base + 2u);
    uint j = w >> 5, sc, m;
    scale_min_k4(base + 4u, j, sc, m);
    float d1 = d * float(sc), m1 = dmin * float(m);
#if defined(W_Q4_K)
    uvec2 q = qbytes8(base + 16u + 32u * (w >> 6) + (w & 31u));
    uvec4 h0 = uvec4(0u), h1 = uvec4(0u);
#else
    uvec2 q = qbytes8(base + 48u + 32u * (w >> 6) + (w & 31u));
    uvec2 qh = qbytes8(base + 16u + (w & 31u));
    uvec4 h0 = ((qb4(qh.x) >> j) & 1u) << 4, h1 = ((qb4(qh.y) >> j) & 1u) << 4;
#endif
    uint sh = (w & 32u) >> 3;
    precise vec4 l = d1 * vec4(((qb4(q.x) >> sh) & 15u) | h0) - m1;
    precise vec4 h = d1 * vec4(((qb4(q.y) >> sh) & 15u) | h1) - m1;
    lo = l;
    hi = h;
#elif defined(W_Q6_K)
    // two halves of 128; in a half, quarter c of 32: low 4 bits from ql[32 (c & 1) + l] (nibble
    // c >> 1), high 2 bits from qh[l] (bits 2c); one int8 scale per 16 elements
    uint hf = w >> 7, c = (w >> 5) & 3u, l0 = w & 31u;
    uvec2 ql = qbytes8(base + 64u * hf + 32u * (c & 1u) + l0);
    uvec2 qh = qbytes8(base + 128u + 32u * hf + l0);
    uint s4 = (c >> 1) * 4u, s2 = 2u * c;
    int sc = int(qbyte(base + 192u + 8u * hf + 2u * c + (l0 >> 4)) << 24) >> 24;
    float ds = qhalf(base + 208u) * float(sc);
    lo = ds * vec4(ivec4(((qb4(ql.x) >> s4) & 15u) | (((qb4(qh.x) >> s2) & 3u) << 4)) - 32);
    hi = ds * vec4(ivec4(((qb4(ql.y) >> s4) & 15u) | (((qb4(qh.y) >> s2) & 3u) << 4)) - 32);
#elif defined(W_Q4_1) || defined(W_Q5_0) || defined(W_Q5_1) || defined(W_IQ4_NL)
    // Q4_0's nibble order (element i < 16: low nibble of qs[i], i + 16: high); Q5_*: the 5th bit
    // of element i is bit i of the u32 qh
#if defined(W_Q4_1)
    const uint QS = 4u;
#elif defined(W_Q5_0)
    const uint QS = 6u;
#elif defined(W_Q5_1)
    const uint QS = 8u;
#else
    const uint QS = 2u;
#endif
    float d = qhalf(base);
    uvec2 q = qbytes8(base + QS + (w & 8u));
    uint sh = (w & 16u) >> 2;
    uvec4 c0 = (qb4(q.x) >> sh) & 15u, c1 = (qb4(q.y) >> sh) & 15u;
#if defined(W_Q5_0) || defined(W_Q5_1)
    uint hb = qbytes8(base + QS - 4u).x >> w;
    c0 |= ((uvec4(hb) >> uvec4(0u, 1u, 2u, 3u)) & 1u) << 4;
    c1 |= ((uvec4(hb) >> uvec4(4u, 5u, 6u, 7u)) & 1u) << 4;
#endif
#if defined(W_Q5_0)
    lo = vec4(ivec4(c0) - 16) * d;
    hi = vec4(ivec4(c1) - 16) * d;
#elif defined(W_IQ4_NL)
    lo = d * kv4(c0);
    hi = d * kv4(c1);
#else
    float m = qhalf(base + 2u);
    precise vec4 l = vec4(c0) * d + m;
    precise vec4 h = vec4(c1) * d + m;
    lo = l;
    hi = h;
#endif
#elif defined(W_Q2_K) || defined(W_Q3_K)
    // 2-bit fields: element e of each 128-half at shift 2 ((e % 128) / 32) of byte 32 half + e % 32;
    // one scale per 16 (Q2_K: 4-bit scale and min bytes; Q3_K: 6 bits biased by 32, and the 3rd
    // bit of element e is bit e / 32 of hmask[e % 32], clear meaning -4)
    uint hf = w >> 7, s2 = 2u * ((w & 127u) >> 5), l0 = w & 31u, j = w >> 4;
#if defined(W_Q2_K)
    uvec2 q = qbytes8(base + 16u + 32u * hf + l0);
    uint sb = qbyte(base + j);
    float dl = qhalf(base + 80u) * float(sb & 15u), ml = qhalf(base + 82u) * float(sb >> 4);
    precise vec4 l = dl * vec4((qb4(q.x) >> s2) & 3u) - ml;
    precise vec4 h = dl * vec4((qb4(q.y) >> s2) & 3u) - ml;
    lo = l;
    hi = h;
#else
    uvec2 q = qbytes8(base + 32u + 32u * hf + l0);
    uvec2 hm = qbytes8(base + l0);
    uint b = w >> 5;
    uint sc = ((qbyte(base + 96u + (j & 7u)) >> (4u * (j >> 3))) & 15u) |
              (((qbyte(base + 104u + (j & 3u)) >> (2u * (j >> 2))) & 3u) << 4);
    float ds = qhalf(base + 108u) * float(int(sc) - 32);
    lo = ds * vec4(ivec4((qb4(q.x) >> s2) & 3u) - 4 * ivec4(1u - ((qb4(hm.x) >> b) & 1u)));
    hi = ds * vec4(ivec4((qb4(q.y) >> s2) & 3u) - 4 * ivec4(1u - ((qb4(hm.y) >> b) & 1u)));
#endif
#elif defined(W_IQ4_XS)
    // 8 sub-blocks of 32: 6-bit scale (low nibble scales_l[ib / 2] >> 4 (ib % 2), high 2 bits
    // scales_h >> 2 ib, biased by 32); qs as IQ4_NL, 16 bytes per sub-block
    uint ib = w >> 5, ww = w & 31u;
    uint shi = qbyte(base + 2u) | (qbyte(base + 3u) << 8);
    uint ls = ((qbyte(base + 4u + (ib >> 1)) >> (4u * (ib & 1u))) & 15u) | (((shi >> (2u * ib)) & 3u) << 4);
    float dl = qhalf(base) * float(int(ls) - 32);
    uvec2 q = qbytes8(base + 8u + 16u * ib + (ww & 8u));
    uint sh = (ww & 16u) >> 2;
    lo = dl * kv4((qb4(q.x) >> sh) & 15u);
    hi = dl * kv4((qb4(q.y) >> sh) & 15u);
#endif
}

// elements e..e+7 as f16, packed two per uint (the tensor-core prefill's W tiles and f16 copies:
// matmul_cm.comp, dequant.comp)
uvec4 wload8_h(uint e) {
    vec4 lo, hi;
    wload8(e, lo, hi);
    return uvec4(packHalf2x16(lo.xy), packHalf2x16(lo.zw), packHalf2x16(hi.xy), packHalf2x16(hi.zw));
}

float wload(uint e) {
    uint f = e - W_OFF, i = f & 7u;
    vec4 lo, hi;
    wload8(e - i, lo, hi);
    return i < 4u ? lo[i] : hi[i - 4u];
}

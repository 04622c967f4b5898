// Block-quantised weights (core/qblock.h: Q8_0, Q4_0, Q4_K, Q6_K), included by wload.glsl.
// The raw blocks are bound as uint words and read with byte addressing: blocks are 34/18/144/210
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
#else
#error "unknown quantised weight type"
#endif

uint qbyte(uint a) { return (wq[a >> 2] >> ((a & 3u) * 8u)) & 0xffu; }
// f16 at byte a (any alignment: a chunk of rows may start at an odd word half)
float qhalf(uint a) {
    uint v = (a & 3u) == 3u ? (qbyte(a) | (qbyte(a + 1u) << 8)) : (wq[a >> 2] >> ((a & 3u) * 8u));
    return unpackHalf2x16(v & 0xffffu).x;
}
// 8 bytes from byte a, little-endian; reads only the words that hold them. No branch: neighbouring
// Q4_0/Q8_0 blocks (18/34 bytes) alternate between aligned and not, so a branch diverges; the
// third word is a predicated load, and (x << 1) << (31 - s) is x << (32 - s) that is 0 at s = 0.
uvec2 qbytes8(uint a) {
    uint i = a >> 2, s = (a & 3u) * 8u;
    uint x0 = wq[i], x1 = wq[i + 1u], x2 = s != 0u ? wq[i + 2u] : 0u;
    return uvec2((x0 >> s) | ((x1 << 1) << (31u - s)), (x1 >> s) | ((x2 << 1) << (31u - s)));
}
uvec4 qb4(uint x) { return (uvec4(x) >> uvec4(0u, 8u, 16u, 24u)) & 0xffu; }
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
#elif defined(W_Q4_K)
    // 8 sub-blocks of 32 with 6-bit scale/min; qs[32c + l] holds element 64c + l (low nibble)
    // and 64c + 32 + l (high nibble)
    float d = qhalf(base), dmin = qhalf(base + 2u);
    uint j = w >> 5, sc, m;
    if (j < 4u) {
        sc = qbyte(base + 4u + j) & 63u;
        m = qbyte(base + 8u + j) & 63u;
    } else {
        uint b8 = qbyte(base + 8u + j);
        sc = (b8 & 15u) | ((qbyte(base + j) >> 6) << 4);
        m = (b8 >> 4) | ((qbyte(base + 4u + j) >> 6) << 4);
    }
    float d1 = d * float(sc), m1 = dmin * float(m);
    uvec2 q = qbytes8(base + 16u + 32u * (w >> 6) + (w & 31u));
    uint sh = (w & 32u) >> 3;
    precise vec4 l = d1 * vec4((qb4(q.x) >> sh) & 15u) - m1;
    precise vec4 h = d1 * vec4((qb4(q.y) >> sh) & 15u) - m1;
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

// The block decoder of the block-at-a-time decode GEMVs (matvec_qb.comp: f32 x; matvec_dp.comp:
// x quantised to 8 bits, integer dot products), included after wload.glsl (W_Q*: wq[] read through WQ(), W_OFF).
// unit(a, p, c, sc, mn) reads unit p (32 weights, or 64 in the K types whose two sub-blocks share
// quant bytes: SU = 2) of the block at byte a and returns the weights as byte codes c (4 per word)
// with w_i = sc[h] * (c_i - C_OFF) + mn[h] (h = i / 16), or for IQ4_NL / IQ4_XS w_i = sc * KV[c_i].
// C_OFF is the type's fixed offset (Q4_0's 8, Q8_0's 128: its int8 q is stored as c = q ^ 0x80, ...);
// only the types with a real minimum (C_MIN) need the sums of x. matvec_qb.comp turns codes into
// floats as uintBitsToFloat(0x4b000000 | c) - (2^23 + C_OFF): exact (c < 2^23) and without an
// int-to-float conversion (a quarter-rate instruction on NVIDIA); matvec_dp.comp into signed bytes
// c - C_OFF for the integer dot products.
#if defined(W_Q8_0)
#define C_OFF 128.0
#elif defined(W_Q4_0)
#define C_OFF 8.0
#elif defined(W_Q5_0)
#define C_OFF 16.0
#elif defined(W_Q6_K)
#define C_OFF 32.0
#elif defined(W_Q3_K)
#define C_OFF 4.0
#elif defined(W_IQ4_NL) || defined(W_IQ4_XS)
#define C_TABLE 1
#else
#define C_OFF 0.0
#define C_MIN 1
#endif
// Sub-blocks (32 weights) per unit: the K types that share quant bytes between two sub-blocks read
// them once for both (Q4_K / Q5_K: a byte's two nibbles; Q2_K / Q3_K / Q6_K: a byte's 2-bit fields),
// but Q4_K, Q5_K and Q6_K take one sub-block per unit when bit 7 of the including shader's XSPEC
// (spec constant 3) says so: twice the units a row, for more invocations on short rows (vk_record.c)
// Bit 8 (matvec_dp.comp only) takes "half-pair" units instead (unit_hp below): 16 weights of each of
// the two sub-blocks that share quant bytes, so a unit is still 32 weights (SU = 1 for the counting)
// but reads 16 quant bytes a run where a one-sub-block unit reads 32 and uses half of each byte.
#if defined(W_Q4_K) || defined(W_Q5_K) || defined(W_Q6_K)
const bool HP = ((XSPEC >> 8) & 1u) != 0u;
const uint SU = (((XSPEC >> 7) | (XSPEC >> 8)) & 1u) != 0u ? 1u : 2u; // (not HP ||: glslang 12 miscompiles it)
#elif defined(W_Q2_K) || defined(W_Q3_K)
const bool HP = false;
const uint SU = 2u;
#else
const bool HP = false;
const uint SU = 1u;
#endif

// ---- quant bytes as words: byte address a, any alignment; reads only the words holding them ----
uint fsh(uint lo, uint hi, uint s) { return (lo >> s) | ((hi << 1) << (31u - s)); } // s = 0: lo
uint ld4(uint a) {
    uint i = a >> 2, s = (a & 3u) * 8u;
    return fsh(WQ(i), s != 0u ? WQ(i + 1u) : 0u, s);
}
uvec4 ld16(uint a) {
    uint i = a >> 2, s = (a & 3u) * 8u;
    uint w0 = WQ(i), w1 = WQ(i + 1u), w2 = WQ(i + 2u), w3 = WQ(i + 3u), w4 = s != 0u ? WQ(i + 4u) : 0u;
    return uvec4(fsh(w0, w1, s), fsh(w1, w2, s), fsh(w2, w3, s), fsh(w3, w4, s));
}
void ld32(uint a, out uvec4 lo, out uvec4 hi) {
    uint i = a >> 2, s = (a & 3u) * 8u;
    uint w[9];
    [[unroll]] for (uint k = 0u; k < 8u; k++) w[k] = WQ(i + k);
    w[8] = s != 0u ? WQ(i + 8u) : 0u;
    lo = uvec4(fsh(w[0], w[1], s), fsh(w[1], w[2], s), fsh(w[2], w[3], s), fsh(w[3], w[4], s));
    hi = uvec4(fsh(w[4], w[5], s), fsh(w[5], w[6], s), fsh(w[6], w[7], s), fsh(w[7], w[8], s));
}
#if defined(W_Q4_K) || defined(W_Q5_K)
// 144- / 176-byte blocks: with the binding's byte offset a multiple of 16 (a uniform test), every
// 32-byte run of qs / qh is 16-byte aligned and read as two uvec4
layout(std430, binding = W_BINDING) readonly buffer WQ16 { uvec4 wq4[]; };
#ifndef WQ4
#define WQ4(i) wq4[i]
#endif
#endif
#ifndef W_OFF_CUR
#define W_OFF_CUR W_OFF // the byte offset of the binding being read (matvec_dp.comp DP_GU: gate's or up's)
#endif
// whether the binding being read starts 16-byte aligned (then so does every Q4_K / Q5_K block)
bool kal16() { return (W_OFF_CUR & 15u) == 0u; }
void ld32k(uint a, out uvec4 lo, out uvec4 hi) {
#if defined(W_Q4_K) || defined(W_Q5_K)
    if (kal16()) {
        lo = WQ4(a >> 4);
        hi = WQ4((a >> 4) + 1u);
        return;
    }
#endif
    ld32(a, lo, hi);
}
uvec4 ld16k(uint a) { // 16 bytes as ld16, one uvec4 where ld32k reads two
#if defined(W_Q4_K) || defined(W_Q5_K)
    if (kal16()) return WQ4(a >> 4);
#endif
    return ld16(a);
}
uvec2 ld8(uint a) {
    uint i = a >> 2, s = (a & 3u) * 8u;
    uint w0 = WQ(i), w1 = WQ(i + 1u), w2 = s != 0u ? WQ(i + 2u) : 0u;
    return uvec2(fsh(w0, w1, s), fsh(w1, w2, s));
}
uvec3 ld12(uint a) {
    uint i = a >> 2, s = (a & 3u) * 8u;
    uint w0 = WQ(i), w1 = WQ(i + 1u), w2 = WQ(i + 2u), w3 = s != 0u ? WQ(i + 3u) : 0u;
    return uvec3(fsh(w0, w1, s), fsh(w1, w2, s), fsh(w2, w3, s));
}
#if defined(W_Q4_K) || defined(W_Q5_K)
// a Q4_K / Q5_K block's first 16 bytes: d and dmin (f16), the 12 bytes of 6-bit scales and mins; one
// 16-byte load where the binding's offset is a multiple of 16 (then every block is: 144 and 176 are)
void khead(uint a, out vec2 dm, out uvec3 sw) {
    if (kal16()) {
        uvec4 h = WQ4(a >> 4);
        dm = unpackHalf2x16(h.x);
        sw = h.yzw;
        return;
    }
    dm = unpackHalf2x16(ld4(a));
    sw = ld12(a + 4u);
}
#endif
uint bsel(uvec3 w, uint k) { return (w[k >> 2] >> (8u * (k & 3u))) & 0xffu; } // byte k of 12
#if defined(W_Q4_K) || defined(W_Q5_K)
// the 6-bit scale and minimum of sub-block j (0..7) from a Q4_K / Q5_K block's 12 scale bytes sw
uvec2 kscale(uvec3 sw, uint j) {
    if (j < 4u) return uvec2(bsel(sw, j) & 63u, bsel(sw, j + 4u) & 63u);
    uint b8 = bsel(sw, j + 4u);
    return uvec2((b8 & 15u) | ((bsel(sw, j - 4u) >> 6) << 4), (b8 >> 4) | ((bsel(sw, j) >> 6) << 4));
}
#endif
float i8(uint b) { return float(int(b << 24) >> 24); }
// bits sh..sh+3 of b to bit 0 of bytes 0..3 (one word per lane of sh)
uvec4 spread4v(uint b, uvec4 sh) {
    uvec4 v = (uvec4(b) >> sh) & 15u;
    return (v * 0x00204081u) & 0x01010101u;
}
const uint NIB = 0x0f0f0f0fu, B2 = 0x03030303u, B1 = 0x01010101u;

// Sub-block (0..QK/32-1) of the block that sub-block s of unit p is
uint sub(uint p, uint s) {
#if defined(W_Q6_K)
    if (SU == 2u) return 4u * (p >> 1) + (p & 1u) + 2u * s; // quarters c and c + 2 share their ql bytes
#endif
    return SU * p + s;
}

// Unit p of the block at byte a: for its sub-block s (weights sub(p, s) * 32 + 0..31), the codes
// c[2s] (weights 0..15) and c[2s + 1] (16..31), and the scale and minimum of each half
// (w = sc * (c - C_OFF) + mn, see the top)
void unit(uint a, uint p, out uvec4 c[4], out vec2 sc[2], out vec2 mn[2]) { // (c[2 SU], sc[SU], mn[SU] set)
#if defined(W_Q8_0)
    float d = qhalf(a);
    ld32(a + 2u, c[0], c[1]);
    c[0] ^= 0x80808080u; // int8 q as q + 128
    c[1] ^= 0x80808080u;
    sc[0] = vec2(d);
    mn[0] = vec2(0.0);
#elif defined(W_Q4_0) || defined(W_IQ4_NL)
    float d = qhalf(a);
    uvec4 q = ld16(a + 2u);
    c[0] = q & NIB;
    c[1] = (q >> 4) & NIB;
    sc[0] = vec2(d);
    mn[0] = vec2(0.0);
#elif defined(W_Q4_1)
    vec2 dm = unpackHalf2x16(ld4(a));
    uvec4 q = ld16(a + 4u);
    c[0] = q & NIB;
    c[1] = (q >> 4) & NIB;
    sc[0] = dm.xx;
    mn[0] = dm.yy;
#elif defined(W_Q5_0) || defined(W_Q5_1)
    // the 5th bit of weight i is bit i of the u32 qh
#if defined(W_Q5_0)
    float d = qhalf(a);
    uint qh = ld4(a + 2u);
    uvec4 q = ld16(a + 6u);
    sc[0] = vec2(d);
    mn[0] = vec2(0.0);
#else
    vec2 dm = unpackHalf2x16(ld4(a));
    uint qh = ld4(a + 4u);
    uvec4 q = ld16(a + 8u);
    sc[0] = dm.xx;
    mn[0] = dm.yy;
#endif
    c[0] = (q & NIB) | (spread4v(qh, uvec4(0u, 4u, 8u, 12u)) << 4);
    c[1] = ((q >> 4) & NIB) | (spread4v(qh, uvec4(16u, 20u, 24u, 28u)) << 4);
#elif defined(W_Q4_K) || defined(W_Q5_K)
    // sub-blocks 2p (low nibbles of qs[32p + l]) and 2p + 1 (high); 6-bit scale and min of each
    // from the 12 bytes at 4; Q5_K: the 5th bit of weight 32j + l is bit j of qh[l]
    vec2 dm;
    uvec3 sw;
    khead(a, dm, sw);
    // qs runs of 32 bytes: run r holds sub-blocks 2r (low nibbles) and 2r + 1 (high); this unit's
    // sub-blocks SU p .. SU p + SU - 1 lie in run SU p / 2
    uint run = SU * p / 2u;
    uvec4 q[2];
#if defined(W_Q4_K)
    ld32k(a + 16u + 32u * run, q[0], q[1]);
#else
    uvec4 h0, h1;
    ld32k(a + 48u + 32u * run, q[0], q[1]);
    ld32k(a + 16u, h0, h1);
#endif
    [[unroll]] for (uint s = 0u; s < SU; s++) {
        uint j = SU * p + s;
        uvec2 sm = kscale(sw, j);
        sc[s] = vec2(dm.x * float(sm.x));
        mn[s] = vec2(-dm.y * float(sm.y));
        c[2u * s] = (q[0] >> (4u * (j & 1u))) & NIB;
        c[2u * s + 1u] = (q[1] >> (4u * (j & 1u))) & NIB;
#if defined(W_Q5_K)
        c[2u * s] |= ((h0 >> j) & B1) << 4;
        c[2u * s + 1u] |= ((h1 >> j) & B1) << 4;
#endif
    }
#elif defined(W_Q6_K)
    // quarters c = c0 + 2s (s < SU) of half hf (SU = 2: p = 2 hf + c0; SU = 1: p = 4 hf + c0): low 4
    // bits from ql[64 hf + 32 (c % 2) + l] (nibble c / 2), high 2 bits from qh[32 hf + l] (bits 2c);
    // int8 scales[8 hf + 2c + h] per 16 weights (SU = 2: the half's 8 bytes, word s, half c0)
    uint hf = SU * p / 4u, c0 = p % (4u / SU);
    uvec4 l0, l1, h0, h1;
    ld32(a + 64u * hf + 32u * (c0 & 1u), l0, l1);
    ld32(a + 128u + 32u * hf, h0, h1);
    uvec2 sv = SU == 2u ? ld8(a + 192u + 8u * hf) : uvec2(ld4(a + 192u + 8u * hf + 2u * c0), 0u);
    float d = qhalf(a + 208u);
    [[unroll]] for (uint s = 0u; s < SU; s++) {
        uint cq = c0 + 2u * s, sh = 4u * (cq >> 1);
        c[2u * s] = ((l0 >> sh) & NIB) | (((h0 >> (2u * cq)) & B2) << 4);
        c[2u * s + 1u] = ((l1 >> sh) & NIB) | (((h1 >> (2u * cq)) & B2) << 4);
        uint w = SU == 2u ? sv[s] >> (16u * c0) : sv.x;
        sc[s] = d * vec2(i8(w & 0xffu), i8((w >> 8) & 0xffu));
        mn[s] = vec2(0.0);
    }
#elif defined(W_Q2_K) || defined(W_Q3_K)
    // sub-blocks j = 2p, 2p + 1: 2-bit fields of qs[32 hf + l] (hf = p / 2) at shift 2 (j % 4);
    // Q2_K: scale (low nibble) and min (high) bytes per 16 weights; Q3_K: the 3rd bit is bit j of
    // hmask[l] (c = q2 | hbit << 2, w = ds (c - 4)), 6-bit scales biased by 32
    uint hf = p >> 1;
    uvec4 q0, q1;
#if defined(W_Q2_K)
    ld32(a + 16u + 32u * hf, q0, q1);
    uint sb = ld4(a + 4u * p);
    vec2 dm = unpackHalf2x16(ld4(a + 80u));
#else
    uvec4 h0, h1;
    ld32(a + 32u + 32u * hf, q0, q1);
    ld32(a, h0, h1);
    uvec3 sw = ld12(a + 96u);
    float d = qhalf(a + 108u);
#endif
    [[unroll]] for (uint s = 0u; s < 2u; s++) {
        uint j = 2u * p + s, s2 = 2u * (j & 3u);
        c[2u * s] = (q0 >> s2) & B2;
        c[2u * s + 1u] = (q1 >> s2) & B2;
#if defined(W_Q2_K)
        uint b0 = (sb >> (16u * s)) & 0xffu, b1 = (sb >> (16u * s + 8u)) & 0xffu;
        sc[s] = dm.x * vec2(float(b0 & 15u), float(b1 & 15u));
        mn[s] = -dm.y * vec2(float(b0 >> 4), float(b1 >> 4));
#else
        c[2u * s] |= ((h0 >> j) & B1) << 2;
        c[2u * s + 1u] |= ((h1 >> j) & B1) << 2;
        vec2 v;
        [[unroll]] for (uint h = 0u; h < 2u; h++) {
            uint k = 2u * j + h;
            uint x = ((bsel(sw, k & 7u) >> (4u * (k >> 3))) & 15u) | (((bsel(sw, 8u + (k & 3u)) >> (2u * (k >> 2))) & 3u) << 4);
            v[h] = d * float(int(x) - 32);
        }
        sc[s] = v;
        mn[s] = vec2(0.0);
#endif
    }
#elif defined(W_IQ4_XS)
    // 6-bit scale: low nibble scales_l[p / 2] >> 4 (p % 2), high 2 bits scales_h >> 2p; biased by 32
    uint w0 = ld4(a);
    float d = unpackHalf2x16(w0).x;
    uint ls = ((qbyte(a + 4u + (p >> 1)) >> (4u * (p & 1u))) & 15u) | (((w0 >> (16u + 2u * p)) & 3u) << 4);
    uvec4 q = ld16(a + 8u + 16u * p);
    c[0] = q & NIB;
    c[1] = (q >> 4) & NIB;
    sc[0] = vec2(d * float(int(ls) - 32));
    mn[0] = vec2(0.0);
#else
#error "matvec_qb.comp: a block-quantised type"
#endif
}

// Half-pair unit p (HP; 8 a block) of the block at byte a: half h = p % 2 (weights 16 h .. 16 h + 15)
// of sub-blocks hp_sub(p, 0) and hp_sub(p, 1), whose quant bytes are the same 16 bytes. c[0], c[1]:
// their codes; sc, mn: their scales and minima (w = sc[s] (c - C_OFF) + mn[s], as unit()'s).
#if defined(W_Q4_K) || defined(W_Q5_K) || defined(W_Q6_K)
uint hp_sub(uint p, uint s) {
#if defined(W_Q6_K)
    return 4u * (p >> 2) + ((p >> 1) & 1u) + 2u * s; // quarters c0 and c0 + 2 of half p / 4
#else
    return (p & ~1u) + s; // sub-blocks 2r, 2r + 1 of qs run r = p / 2
#endif
}
void unit_hp(uint a, uint p, out uvec4 c[2], out vec2 sc, out vec2 mn) {
    uint h = p & 1u;
#if defined(W_Q6_K)
    // quarters c0, c0 + 2 of half hf: ql[64 hf + 32 c0 + 16 h + l] (low / high nibble), qh[32 hf + 16 h
    // + l] (bits 2c), int8 scales[8 hf + 2c + h]
    uint hf = p >> 2, c0 = (p >> 1) & 1u;
    uvec4 l = ld16(a + 64u * hf + 32u * c0 + 16u * h), hb = ld16(a + 128u + 32u * hf + 16u * h);
    uint sa = a + 192u + 8u * hf + 2u * c0 + h;
    float d = qhalf(a + 208u);
    c[0] = (l & NIB) | (((hb >> (2u * c0)) & B2) << 4);
    c[1] = ((l >> 4) & NIB) | (((hb >> (2u * c0 + 4u)) & B2) << 4);
    sc = d * vec2(i8(qbyte(sa)), i8(qbyte(sa + 4u)));
    mn = vec2(0.0);
#else
    // sub-blocks j = 2r (low nibbles of qs[32 r + 16 h + l]) and 2r + 1 (high); Q5_K: the 5th bit of
    // weight 32 j + 16 h + l is bit j of qh[16 h + l]
    uint r = p >> 1;
    vec2 dm;
    uvec3 sw;
    khead(a, dm, sw);
#if defined(W_Q4_K)
    uvec4 q = ld16k(a + 16u + 32u * r + 16u * h);
#else
    uvec4 q = ld16k(a + 48u + 32u * r + 16u * h), qh = ld16k(a + 16u + 16u * h);
#endif
    [[unroll]] for (uint s = 0u; s < 2u; s++) {
        uint j = 2u * r + s;
        uvec2 sm = kscale(sw, j);
        sc[s] = dm.x * float(sm.x);
        mn[s] = -dm.y * float(sm.y);
        c[s] = (q >> (4u * s)) & NIB;
#if defined(W_Q5_K)
        c[s] |= ((qh >> j) & B1) << 4;
#endif
    }
#endif
}
#endif

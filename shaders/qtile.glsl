// One row's 32 consecutive weights of a block-quantised W (a 32-aligned step of K: a whole block
// of the 32-weight types, one 32-weight sub-block of the 256-weight ones) in two steps, for the
// tile loaders that dequantise in place (matmul_cmv.comp built with W_Q*, and matmul_q.comp built
// with QTILE, which runs on lavapipe and so checks these decoders against the CPU in CI):
//   qt_load(e, r)     the raw words that hold them, into r[QTW]: loads only, no arithmetic on
//                     the loaded values, so a loader can issue them before its matrix products and
//                     decode after (the register prefetch of matmul_cmv.comp)
//   qt_dec(e, r, v)   the 32 values, v[q] = weights 4q..4q+3, in f32
// e is the element index of the first weight (W_OFF + row * K + k, k % 32 == 0), as wload8 takes.
// The values are wquant.glsl's wload8 products, in the same order (`precise` where it has it), so
// they are bit-identical to wload8's, loom_dequant_row's and the f16 copy's (dequant.comp) before
// any rounding to f16. Included after wquant.glsl (wload.glsl with a W_Q* type).
//
// Every field is read as a run of bytes [a, a + n). Runs of 16 bytes or more (the quants) are read
// as the 16-byte vectors that hold them (QT_RUN16: a lane's loads touch as few cache lines as they
// can, and there are 4x fewer of them than word loads), small ones (scales) as the words that hold
// them (QT_RUN); vectors / words past the run are not read (they may lie past the binding). A
// vector run is then moved down by (a >> 2) & 3 words with two rounds of selects (QT_NORM, in
// qt_dec), after which both kinds hold the buffer's words a >> 2, ... from r[o], and bytes
// 4k .. 4k + 3 of the run are QW(o, k, s) = qt_fsh(r[o + k], r[o + k + 1], s), s = (a & 3) * 8:
// compile-time indices only, so the registers are never indexed dynamically. The binding starts
// 16-byte aligned and its range is rounded up to 16 bytes (vk_record.c), as the f16 tiles' uvec4
// loads already assume.
#ifndef W_QUANT
#error "qtile.glsl: include wload.glsl with a block-quantised W_* type first"
#endif

layout(std430, binding = W_BINDING) readonly buffer WBQ4 { uvec4 wq4[]; };
#define QT_NW(n) (((n) + 3u) / 4u + 1u) // registers of an n-byte word run: ceil(n / 4) + 1
#define QT_NV(n) (4u * (((n) + 30u) / 16u)) // of a vector run: the vectors any alignment needs
uint qt_fsh(uint lo, uint hi, uint s) { return (lo >> s) | ((hi << 1) << (31u - s)); } // s = 0: lo
// codes c (< 2^23) minus off as floats, exactly: 2^23 + c is a float's bits 0x4b000000 | c, so one
// subtraction and no integer-to-float conversion (a quarter-rate instruction on NVIDIA; as
// matvec_qb.comp does). Equal to vec4(c) - off for the small integers the blocks hold.
vec4 qt_fo(uvec4 c, float off) { return uintBitsToFloat(c | 0x4b000000u) - (8388608.0 + off); }
#define QT_RUN(o, a, n)                                                                            \
    {                                                                                              \
        uint i_ = (a) >> 2, l_ = ((a) + (n) - 1u) >> 2;                                            \
        [[unroll]] for (uint k_ = 0u; k_ < QT_NW(n); k_++) r[(o) + k_] = i_ + k_ <= l_ ? wq[i_ + k_] : 0u; \
    }
#define QT_RUN16(o, a, n)                                                                          \
    {                                                                                              \
        uint i_ = (a) >> 4, l_ = ((a) + (n) - 1u) >> 4;                                            \
        [[unroll]] for (uint k_ = 0u; k_ < QT_NV(n) / 4u; k_++) {                                  \
            uvec4 v_ = i_ + k_ <= l_ ? wq4[i_ + k_] : uvec4(0u);                                   \
            r[(o) + 4u * k_] = v_.x;                                                               \
            r[(o) + 4u * k_ + 1u] = v_.y;                                                          \
            r[(o) + 4u * k_ + 2u] = v_.z;                                                          \
            r[(o) + 4u * k_ + 3u] = v_.w;                                                          \
        }                                                                                          \
    }
// a vector run loaded by QT_RUN16(o, a, n), moved down so that r[o] is the word at a >> 2
#define QT_NORM(o, a, n)                                                                           \
    {                                                                                              \
        uint q_ = ((a) >> 2) & 3u;                                                                 \
        [[unroll]] for (uint k_ = 0u; k_ + 1u < QT_NV(n); k_++)                                    \
            r[(o) + k_] = (q_ & 1u) != 0u ? r[(o) + k_ + 1u] : r[(o) + k_];                        \
        [[unroll]] for (uint k_ = 0u; k_ + 2u < QT_NV(n); k_++)                                    \
            r[(o) + k_] = (q_ & 2u) != 0u ? r[(o) + k_ + 2u] : r[(o) + k_];                        \
    }
// word k of the run held from r[o] whose first byte was at shift s
#define QW(o, k, s) qt_fsh(r[(o) + (k)], r[(o) + (k) + 1u], s)
// 4 bytes at the odd half-word k + 1/2 of a run (Q8_0 / Q4_0 / Q5_0 quants after a 2-byte scale)
#define QW2(o, k, s) ((QW(o, k, s) >> 16) | (QW(o, (k) + 1u, s) << 16))

// registers per row: the runs' sizes (QT_NV / QT_NW) at the offsets qt_load uses
#if defined(W_Q8_0)
#define QTW 16u // 34 bytes
#elif defined(W_Q4_0) || defined(W_IQ4_NL) || defined(W_Q4_1) || defined(W_Q5_0) || defined(W_Q5_1)
#define QTW 12u // 18 / 20 / 22 / 24 bytes
#elif defined(W_Q4_K)
#define QTW 20u // 16 + 32
#elif defined(W_Q5_K)
#define QTW 32u // 16 + 32 + 32
#elif defined(W_Q6_K)
#define QTW 28u // 32 + 32 vectors, 2 + 2 words
#elif defined(W_Q2_K)
#define QTW 16u // 2 + 4 words, 32 vectors
#elif defined(W_Q3_K)
#define QTW 30u // 32 + 32 vectors, 2 words
#elif defined(W_IQ4_XS)
#define QTW 11u // 8 words, 16 vectors
#endif

// block start (bytes) and sub-block (w / 32) of element e
void qt_at(uint e, out uint base, out uint j) {
    uint f = e - W_OFF;
    base = W_OFF + (f / QK) * QB;
    j = (f % QK) >> 5;
}

void qt_load(uint e, out uint r[QTW]) {
    uint base, j;
    qt_at(e, base, j);
#if defined(W_Q8_0)
    QT_RUN16(0u, base, 34u)
#elif defined(W_Q4_0) || defined(W_IQ4_NL)
    QT_RUN16(0u, base, 18u)
#elif defined(W_Q4_1)
    QT_RUN16(0u, base, 20u)
#elif defined(W_Q5_0)
    QT_RUN16(0u, base, 22u)
#elif defined(W_Q5_1)
    QT_RUN16(0u, base, 24u)
#elif defined(W_Q4_K)
    QT_RUN16(0u, base, 16u)                          // d, dmin, 12 scale bytes
    QT_RUN16(8u, base + 16u + 32u * (j >> 1), 32u)   // qs: nibble j & 1
#elif defined(W_Q5_K)
    QT_RUN16(0u, base, 16u)
    QT_RUN16(8u, base + 16u, 32u)                    // qh: bit j
    QT_RUN16(20u, base + 48u + 32u * (j >> 1), 32u)  // qs
#elif defined(W_Q6_K)
    uint hf = j >> 2, c = j & 3u;
    QT_RUN16(0u, base + 64u * hf + 32u * (c & 1u), 32u) // ql: nibble c >> 1
    QT_RUN16(12u, base + 128u + 32u * hf, 32u)          // qh: bits 2c
    QT_RUN(24u, base + 192u + 8u * hf + 2u * c, 2u)     // two int8 scales (one per 16)
    QT_RUN(26u, base + 208u, 2u)                        // d
#elif defined(W_Q2_K)
    QT_RUN(0u, base + 2u * j, 2u)                    // scale/min bytes of the two 16s
    QT_RUN(2u, base + 80u, 4u)                       // d, dmin
    QT_RUN16(4u, base + 16u + 32u * (j >> 2), 32u)   // qs: bits 2 (j % 4)
#elif defined(W_Q3_K)
    QT_RUN16(0u, base, 32u)                          // hmask: bit j
    QT_RUN16(12u, base + 32u + 32u * (j >> 2), 32u)  // qs: bits 2 (j % 4)
    QT_RUN(24u, base + 96u, 12u)                     // scales
    QT_RUN(28u, base + 108u, 2u)                     // d
#elif defined(W_IQ4_XS)
    QT_RUN(0u, base, 8u)                             // d, scales_h, scales_l
    QT_RUN16(3u, base + 8u + 16u * j, 16u)           // qs
#endif
}

void qt_dec(uint e, uint r[QTW], out vec4 v[8]) {
    uint base, j;
    qt_at(e, base, j);
    uint s = (base & 3u) * 8u; // the shift of the runs that start at a multiple of 4 into the block
#if defined(W_Q8_0)
    QT_NORM(0u, base, 34u)
    float d = unpackHalf2x16(QW(0u, 0u, s)).x;
    [[unroll]] for (uint m = 0u; m < 8u; m++) v[m] = qt_fo(qb4(QW2(0u, m, s) ^ 0x80808080u), 128.0) * d; // int8 q as q + 128
#elif defined(W_Q4_0) || defined(W_IQ4_NL) || defined(W_Q4_1) || defined(W_Q5_0) || defined(W_Q5_1)
    // weight i < 16: low nibble of qs[i], i + 16: its high nibble; Q5_*: bit i of the u32 qh is
    // weight i's 5th bit
    QT_NORM(0u, base, 24u) // (the same moves for the 18-, 20- and 22-byte runs: QT_NV is 12 for all)
    float d = unpackHalf2x16(QW(0u, 0u, s)).x;
#if defined(W_Q4_1) || defined(W_Q5_1)
    float mn = unpackHalf2x16(QW(0u, 0u, s)).y;
#endif
#if defined(W_Q5_0)
    uint qh = QW2(0u, 0u, s);
#elif defined(W_Q5_1)
    uint qh = QW(0u, 1u, s);
#endif
    [[unroll]] for (uint m = 0u; m < 4u; m++) {
#if defined(W_Q4_0) || defined(W_IQ4_NL)
        uint q = QW2(0u, m, s);
#elif defined(W_Q4_1)
        uint q = QW(0u, m + 1u, s);
#elif defined(W_Q5_0)
        uint q = QW2(0u, m + 1u, s);
#else
        uint q = QW(0u, m + 2u, s);
#endif
        uvec4 c0 = qb4(q) & 15u, c1 = qb4(q) >> 4;
#if defined(W_Q5_0) || defined(W_Q5_1)
        c0 |= ((uvec4(qh >> (4u * m)) >> uvec4(0u, 1u, 2u, 3u)) & 1u) << 4;
        c1 |= ((uvec4(qh >> (16u + 4u * m)) >> uvec4(0u, 1u, 2u, 3u)) & 1u) << 4;
#endif
#if defined(W_Q4_0)
        v[m] = qt_fo(c0, 8.0) * d;
        v[m + 4u] = qt_fo(c1, 8.0) * d;
#elif defined(W_IQ4_NL)
        v[m] = d * kv4(c0);
        v[m + 4u] = d * kv4(c1);
#elif defined(W_Q5_0)
        v[m] = qt_fo(c0, 16.0) * d;
        v[m + 4u] = qt_fo(c1, 16.0) * d;
#else
        precise vec4 l = qt_fo(c0, 0.0) * d + mn;
        precise vec4 h = qt_fo(c1, 0.0) * d + mn;
        v[m] = l;
        v[m + 4u] = h;
#endif
    }
#elif defined(W_Q4_K) || defined(W_Q5_K)
    // 6-bit scale and minimum of sub-block j from the 12 bytes at 4 (wquant.glsl's scale_min_k4)
    QT_NORM(0u, base, 16u)
#if defined(W_Q4_K)
    QT_NORM(8u, base + 16u, 32u) // (the qs run's address is base + 16 + a multiple of 32: same moves)
#else
    QT_NORM(8u, base + 16u, 32u)
    QT_NORM(20u, base + 48u, 32u)
#endif
    vec2 dm = unpackHalf2x16(QW(0u, 0u, s));
    uvec3 sw = uvec3(QW(0u, 1u, s), QW(0u, 2u, s), QW(0u, 3u, s));
#define QT_B(k) ((sw[(k) >> 2] >> (8u * ((k) & 3u))) & 0xffu)
    uint sc, mm;
    if (j < 4u) {
        sc = QT_B(j) & 63u;
        mm = QT_B(j + 4u) & 63u;
    } else {
        uint b8 = QT_B(j + 4u);
        sc = (b8 & 15u) | ((QT_B(j - 4u) >> 6) << 4);
        mm = (b8 >> 4) | ((QT_B(j) >> 6) << 4);
    }
#undef QT_B
    float d1 = dm.x * float(sc), m1 = dm.y * float(mm);
    uint sh = (j & 1u) * 4u;
#if defined(W_Q4_K)
    uint sq = ((base + 16u) & 3u) * 8u;
#else
    uint sq = s;
#endif
    [[unroll]] for (uint m = 0u; m < 8u; m++) {
#if defined(W_Q4_K)
        uvec4 c = (qb4(QW(8u, m, sq)) >> sh) & 15u;
#else
        uvec4 c = ((qb4(QW(20u, m, sq)) >> sh) & 15u) | (((qb4(QW(8u, m, s)) >> j) & 1u) << 4);
#endif
        precise vec4 l = d1 * qt_fo(c, 0.0) - m1;
        v[m] = l;
    }
#elif defined(W_Q6_K)
    uint hf = j >> 2, c = j & 3u, s4 = (c >> 1) * 4u, s2 = 2u * c;
    QT_NORM(0u, base, 32u) // (ql's address is base + a multiple of 32, qh's of 32 too)
    QT_NORM(12u, base, 32u)
    uint sl = ((base + 64u * hf + 32u * (c & 1u)) & 3u) * 8u, sc = ((base + 192u + 8u * hf + 2u * c) & 3u) * 8u;
    uint scw = QW(24u, 0u, sc);
    float d = unpackHalf2x16(QW(26u, 0u, s)).x;
    float ds0 = d * float(int(scw << 24) >> 24), ds1 = d * float(int(scw << 16) >> 24);
    [[unroll]] for (uint m = 0u; m < 8u; m++) {
        uvec4 q = ((qb4(QW(0u, m, sl)) >> s4) & 15u) | (((qb4(QW(12u, m, s)) >> s2) & 3u) << 4);
        v[m] = (m < 4u ? ds0 : ds1) * qt_fo(q, 32.0);
    }
#elif defined(W_Q2_K)
    // one scale/min byte per 16 weights: low nibble scale, high nibble minimum
    QT_NORM(4u, base, 32u) // (qs's address is base + a multiple of 16)
    uint sb = QW(0u, 0u, ((base + 2u * j) & 3u) * 8u);
    vec2 dm = unpackHalf2x16(QW(2u, 0u, s));
    uint s2 = 2u * (j & 3u);
    [[unroll]] for (uint h = 0u; h < 2u; h++) {
        uint b = (sb >> (8u * h)) & 0xffu;
        float dl = dm.x * float(b & 15u), ml = dm.y * float(b >> 4);
        [[unroll]] for (uint m = 4u * h; m < 4u * h + 4u; m++) {
            precise vec4 l = dl * qt_fo((qb4(QW(4u, m, s)) >> s2) & 3u, 0.0) - ml;
            v[m] = l;
        }
    }
#elif defined(W_Q3_K)
    // 6-bit scales biased by 32 per 16 weights (k = 2j, 2j + 1); the 3rd bit of weight l is bit j
    // of hmask[l], clear meaning -4
    QT_NORM(0u, base, 32u)
    QT_NORM(12u, base, 32u) // (qs's address is base + a multiple of 32)
    uvec4 sw = uvec4(QW(24u, 0u, s), QW(24u, 1u, s), QW(24u, 2u, s), 0u);
#define QT_B(k) ((sw[(k) >> 2] >> (8u * ((k) & 3u))) & 0xffu)
    float d = unpackHalf2x16(QW(28u, 0u, s)).x;
    uint s2 = 2u * (j & 3u);
    [[unroll]] for (uint h = 0u; h < 2u; h++) {
        uint k = 2u * j + h;
        uint sc = ((QT_B(k & 7u) >> (4u * (k >> 3))) & 15u) | (((QT_B(8u + (k & 3u)) >> (2u * (k >> 2))) & 3u) << 4);
        float ds = d * float(int(sc) - 32);
        [[unroll]] for (uint m = 4u * h; m < 4u * h + 4u; m++)
            v[m] = ds * qt_fo(((qb4(QW(12u, m, s)) >> s2) & 3u) | (((qb4(QW(0u, m, s)) >> j) & 1u) << 2), 4.0);
    }
#undef QT_B
#elif defined(W_IQ4_XS)
    // 6-bit scale of sub-block j: low nibble scales_l[j / 2] >> 4 (j % 2), high 2 bits
    // scales_h >> 2j, biased by 32; qs as IQ4_NL, 16 bytes per sub-block
    QT_NORM(3u, base + 8u, 16u) // (qs: base + 8 + a multiple of 16)
    uint w0 = QW(0u, 0u, s), w1 = QW(0u, 1u, s);
    uint ls = ((w1 >> (4u * j)) & 15u) | (((w0 >> (16u + 2u * j)) & 3u) << 4);
    float dl = unpackHalf2x16(w0).x * float(int(ls) - 32);
    [[unroll]] for (uint m = 0u; m < 4u; m++) {
        uint q = QW(3u, m, s);
        v[m] = dl * kv4(qb4(q) & 15u);
        v[m + 4u] = dl * kv4(qb4(q) >> 4);
    }
#endif
}

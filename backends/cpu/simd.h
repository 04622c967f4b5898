/* The per-ISA vector layer (as ggml-cpu's simd-mappings.h): one vector type `vf` of VL floats and
 * the handful of operations the shared kernels (simd_ops.h) are written in. A flavour file defines
 * CPU_ISA_AVX2 or CPU_ISA_AVX512, is compiled with that ISA's flags, includes this header and then
 * simd_ops.h, and so instantiates the kernels for its ISA. Only what differs between the ISAs in
 * substance lives here: exp's last step (AVX-512 rebuilds 2^n with vscalefps, AVX2 in the exponent
 * field, over different clamps; the polynomial is one source, vexp at the end), partial vectors (AVX-512 masks, AVX2 masked moves of 32-bit lanes) and the
 * horizontal reductions. The scalar flavour (cpu_scalar.c) stays written out by hand: it is the
 * reference the vector kernels are tested against.
 *
 *   vf vzero(), vset1(s), vadd/vsub/vmul/vdiv/vmax(a, b), vfmadd(a, b, c) = a b + c,
 *      vfmsub(a, b, c) = a b - c, vabs(a), vor_sign(r, y) (y's sign bits or-ed into r),
 *      vsel_lt(a, t, p, r) (lanes with a < t from p, others from r)
 *   vload/vstore(p[, v]); vload_n/vstore_n(p[, v], n): the first n lanes (n >= VL: all), others
 *      read as 0 and left untouched; vzero_tail(v, n): lanes from n on zeroed;
 *      vmax_tail(acc, v, n): acc with its first n lanes maxed with v's
 *   float vhsum(v), vhmax(v); vf vexp(x) (Cephes expf, ~1 ulp; NaN kept); vprefetch(p)
 */
#ifndef LOOM_CPU_SIMD_H
#define LOOM_CPU_SIMD_H

#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#define AI static inline __attribute__((always_inline))

#if defined(CPU_ISA_AVX512)

typedef __m512 vf;
#define VL 16

AI __mmask16 tail_mask(int64_t n) { return (__mmask16)((1u << n) - 1u); }
AI __mmask16 vmask(int64_t n) { return n >= 16 ? (__mmask16)0xffff : tail_mask(n); }

/* vexp's per-ISA part (below): 2^n applied with vscalefps, which handles the range ends itself
 * (overflow to inf, underflow to 0): the clamp only keeps r small */
#define VEXP_LO -104.0f
#define VEXP_HI 89.0f
AI __m512 vround_(__m512 x) { return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
AI __m512 vscale2n_(__m512 p, __m512 n) { return _mm512_scalef_ps(p, n); }
AI __m512 vmin_(__m512 a, __m512 b) { return _mm512_min_ps(a, b); }
AI __m512 vfnmadd_(__m512 a, __m512 b, __m512 c) { return _mm512_fnmadd_ps(a, b, c); }

AI vf vzero(void) { return _mm512_setzero_ps(); }
AI vf vset1(float s) { return _mm512_set1_ps(s); }
AI vf vadd(vf a, vf b) { return _mm512_add_ps(a, b); }
AI vf vsub(vf a, vf b) { return _mm512_sub_ps(a, b); }
AI vf vmul(vf a, vf b) { return _mm512_mul_ps(a, b); }
AI vf vdiv(vf a, vf b) { return _mm512_div_ps(a, b); }
AI vf vmax(vf a, vf b) { return _mm512_max_ps(a, b); }
AI vf vfmadd(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
AI vf vfmsub(vf a, vf b, vf c) { return _mm512_fmsub_ps(a, b, c); }
AI vf vabs(vf a) { return _mm512_abs_ps(a); }
AI vf vor_sign(vf r, vf y) {
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(r),
                                               _mm512_and_si512(_mm512_castps_si512(y), _mm512_set1_epi32((int)0x80000000u))));
}
AI vf vsel_lt(vf a, vf t, vf p, vf r) { return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, t, _CMP_LT_OQ), r, p); }
AI vf vload(const float *p) { return _mm512_loadu_ps(p); }
AI void vstore(float *p, vf v) { _mm512_storeu_ps(p, v); }
AI vf vload_n(const float *p, int64_t n) { return _mm512_maskz_loadu_ps(vmask(n), p); }
AI void vstore_n(float *p, vf v, int64_t n) { _mm512_mask_storeu_ps(p, vmask(n), v); }
AI vf vzero_tail(vf v, int64_t n) { return _mm512_maskz_mov_ps(vmask(n), v); }
AI vf vmax_tail(vf acc, vf v, int64_t n) { return _mm512_mask_max_ps(acc, vmask(n), acc, v); }
AI float vhsum(vf v) { return _mm512_reduce_add_ps(v); }
AI float vhmax(vf v) { return _mm512_reduce_max_ps(v); }

#elif defined(CPU_ISA_AVX2)

typedef __m256 vf;
#define VL 8

static const int32_t mask_tab[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
/* lanes [0, n) on, n in [0, 8] */
AI __m256i lane_mask(int64_t n) { return _mm256_loadu_si256((const __m256i *)(mask_tab + 8 - n)); }

AI float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
AI float hmax8(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* vexp's per-ISA part (below): 2^n built in the exponent field, so the clamp keeps it finite */
#define VEXP_LO -87.3f
#define VEXP_HI 88.3f
AI __m256 vround_(__m256 x) { return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
AI __m256 vscale2n_(__m256 p, __m256 n) {
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}
AI __m256 vmin_(__m256 a, __m256 b) { return _mm256_min_ps(a, b); }
AI __m256 vfnmadd_(__m256 a, __m256 b, __m256 c) { return _mm256_fnmadd_ps(a, b, c); }

AI __m256 ld_n(const float *p, int64_t n) {
    return n >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, lane_mask(n));
}
AI void st_n(float *p, __m256 v, int64_t n) {
    if (n >= 8)
        _mm256_storeu_ps(p, v);
    else
        _mm256_maskstore_ps(p, lane_mask(n), v);
}

AI vf vzero(void) { return _mm256_setzero_ps(); }
AI vf vset1(float s) { return _mm256_set1_ps(s); }
AI vf vadd(vf a, vf b) { return _mm256_add_ps(a, b); }
AI vf vsub(vf a, vf b) { return _mm256_sub_ps(a, b); }
AI vf vmul(vf a, vf b) { return _mm256_mul_ps(a, b); }
AI vf vdiv(vf a, vf b) { return _mm256_div_ps(a, b); }
AI vf vmax(vf a, vf b) { return _mm256_max_ps(a, b); }
AI vf vfmadd(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
AI vf vfmsub(vf a, vf b, vf c) { return _mm256_fmsub_ps(a, b, c); }
AI vf vabs(vf a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
AI vf vor_sign(vf r, vf y) { return _mm256_or_ps(r, _mm256_and_ps(_mm256_set1_ps(-0.0f), y)); }
AI vf vsel_lt(vf a, vf t, vf p, vf r) { return _mm256_blendv_ps(r, p, _mm256_cmp_ps(a, t, _CMP_LT_OQ)); }
AI vf vload(const float *p) { return _mm256_loadu_ps(p); }
AI void vstore(float *p, vf v) { _mm256_storeu_ps(p, v); }
AI vf vload_n(const float *p, int64_t n) { return ld_n(p, n); }
AI void vstore_n(float *p, vf v, int64_t n) { st_n(p, v, n); }
AI vf vzero_tail(vf v, int64_t n) { return n >= 8 ? v : _mm256_and_ps(v, _mm256_castsi256_ps(lane_mask(n))); }
AI vf vmax_tail(vf acc, vf v, int64_t n) {
    if (n < 8) v = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), v, _mm256_castsi256_ps(lane_mask(n)));
    return _mm256_max_ps(acc, v);
}
AI float vhsum(vf v) { return hsum8(v); }
AI float vhmax(vf v) { return hmax8(v); }

#else
#error "define CPU_ISA_AVX2 or CPU_ISA_AVX512 before including backends/cpu/simd.h"
#endif

AI void vprefetch(const void *p) { _mm_prefetch((const char *)p, _MM_HINT_T0); }

/* Cephes expf, one source for every ISA: 2^n * p(r), r = x - n ln2 in [-ln2/2, ln2/2] (ln2 in two
 * parts), p of degree 7; ~1 ulp. Each ISA above gives the clamp (VEXP_LO, VEXP_HI), the rounding and
 * how 2^n is applied (vscale2n_). The min/max operand order keeps NaN. */
AI vf vexp(vf x) {
    x = vmax(vset1(VEXP_LO), vmin_(vset1(VEXP_HI), x));
    vf n = vround_(vmul(x, vset1(1.44269504088896341f)));
    vf r = vfnmadd_(n, vset1(0.693359375f), x);
    r = vfnmadd_(n, vset1(-2.12194440e-4f), r);
    vf p = vset1(1.9875691500e-4f);
    p = vfmadd(p, r, vset1(1.3981999507e-3f));
    p = vfmadd(p, r, vset1(8.3334519073e-3f));
    p = vfmadd(p, r, vset1(4.1665795894e-2f));
    p = vfmadd(p, r, vset1(1.6666665459e-1f));
    p = vfmadd(p, r, vset1(5.0000001201e-1f));
    p = vfmadd(p, vmul(r, r), vadd(r, vset1(1.0f)));
    return vscale2n_(p, n);
}

#endif

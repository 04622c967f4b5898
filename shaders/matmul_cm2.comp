#version 450
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_cooperative_matrix : require
#extension GL_NV_cooperative_matrix2 : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_EXT_shader_16bit_storage : require
#extension GL_EXT_shader_explicit_arithmetic_types_int32 : require
#extension GL_EXT_buffer_reference : require
// MATMUL (prefill) on VK_NV_cooperative_matrix2 (LOOM_VK_CM2; docs/vulkan-backend.md): workgroup-scope
// cooperative matrices whose loads the driver stages through shared memory itself, tensor layouts
// that clamp at the matrix edges (no masking here), and, for block-quantised W, a decode function
// the load calls per element (dequantisation inside the tile load: no f16 copy of W in memory).
// y[M, N] = x[M, K] W[N, K]^T (+ bias), as matmul_cm.comp: x and W rounded to f16, f32 accumulators.
// Bindings: 0 y (f32), 1 x as f16 (the packed-half copy tohalf.comp writes; with XF32 x itself, f32,
// loaded as an f32 matrix and converted: cooperativeMatrixConversions), 2 W, 3 bias.
// Push constants: u[0] = M, u[1] = N (columns in this dispatch), u[2] = K, u[3] = has bias,
// u[4] = n0 (first column of y this dispatch writes), u[5] = y row stride, u[7] = K splits
// (partial products at y + z * u[8]). The host takes this path only when the bases of x, W and y
// are 16-byte aligned (the tensor loads' rule); any M, N, K.
// Build-time: BM x BN workgroup tile, BK of K per step, WG invocations (one of the device's
// workgroupInvocations for workgroup scope), and the weight type W_F16, W_BF16 or W_Q*.
#include "common.glsl"

#if !defined(BM) || !defined(BN) || !defined(BK) || !defined(WG)
#error "matmul_cm2.comp: define BM, BN, BK and WG (vulkan.cmake)"
#endif
layout(local_size_x = WG) in;

layout(std430, binding = 0) writeonly buffer Y { vec4 y4[]; };
#ifdef XF32
layout(std430, binding = 1) readonly buffer X { vec4 x4[]; };
#else
layout(std430, binding = 1) readonly buffer X { uvec4 xh8[]; };
#endif
layout(std430, binding = 3) readonly buffer Bi { float bias[]; };

#define CLAMP gl_CooperativeMatrixClampModeConstantNV
#define MA coopmat<float16_t, gl_ScopeWorkgroup, BM, BK, gl_MatrixUseA>
#define MB coopmat<float16_t, gl_ScopeWorkgroup, BK, BN, gl_MatrixUseB>
#define MC coopmat<float, gl_ScopeWorkgroup, BM, BN, gl_MatrixUseAccumulator>

// ---- weights: f16 as is; everything else through a decode function on its block (struct) ----
// Blocks are read as 16-bit words (every block size is even): 16-bit storage, no 8-bit access.
#if defined(W_F16)
layout(std430, binding = 2) readonly buffer W { uvec4 w8[]; };
#define QK 1
#else
#if defined(W_BF16)
#define QK 1
layout(buffer_reference, std430, buffer_reference_align = 2) buffer Blk { uint16_t v; };
float16_t decode(const in Blk b, const in uint32_t bc[2], const in uint32_t ib[2]) {
    return float16_t(uintBitsToFloat(uint(b.v) << 16));
}
#elif defined(W_Q4_0)
#define QK 32
layout(buffer_reference, std430, buffer_reference_align = 2) buffer Blk { float16_t d; uint16_t qs[8]; };
float16_t decode(const in Blk b, const in uint32_t bc[2], const in uint32_t ib[2]) {
    uint i = ib[1], q = (uint(b.qs[(i & 15u) >> 1]) >> (((i & 1u) << 3) + ((i >> 4) << 2))) & 15u;
    return float16_t((float(q) - 8.0) * float(b.d));
}
#elif defined(W_Q8_0)
#define QK 32
layout(buffer_reference, std430, buffer_reference_align = 2) buffer Blk { float16_t d; uint16_t qs[16]; };
float16_t decode(const in Blk b, const in uint32_t bc[2], const in uint32_t ib[2]) {
    uint i = ib[1];
    int q = int(uint(b.qs[i >> 1]) << (24u - ((i & 1u) << 3))) >> 24;
    return float16_t(float(b.d) * float(q));
}
#elif defined(W_Q4_1)
#define QK 32
layout(buffer_reference, std430, buffer_reference_align = 2) buffer Blk { float16_t d, m; uint16_t qs[8]; };
float16_t decode(const in Blk b, const in uint32_t bc[2], const in uint32_t ib[2]) {
    uint i = ib[1], q = (uint(b.qs[(i & 15u) >> 1]) >> (((i & 1u) << 3) + ((i >> 4) << 2))) & 15u;
    precise float v = float(q) * float(b.d) + float(b.m);
    return float16_t(v);
}
#elif defined(W_Q5_0)
#define QK 32
layout(buffer_reference, std430, buffer_reference_align = 2) buffer Blk { float16_t d; uint16_t qh[2]; uint16_t qs[8]; };
float16_t decode(const in Blk b, const in uint32_t bc[2], const in uint32_t ib[2]) {
    uint i = ib[1], q = (uint(b.qs[(i & 15u) >> 1]) >> (((i & 1u) << 3) + ((i >> 4) << 2))) & 15u;
    q |= ((uint(b.qh[i >> 4]) >> (i & 15u)) & 1u) << 4;
    return float16_t(float(int(q) - 16) * float(b.d));
}
#elif defined(W_Q5_1)
#define QK 32
layout(buffer_reference, std430, buffer_reference_align = 2) buffer Blk { float16_t d, m; uint16_t qh[2]; uint16_t qs[8]; };
float16_t decode(const in Blk b, const in uint32_t bc[2], const in uint32_t ib[2]) {
    uint i = ib[1], q = (uint(b.qs[(i & 15u) >> 1]) >> (((i & 1u) << 3) + ((i >> 4) << 2))) & 15u;
    q |= ((uint(b.qh[i >> 4]) >> (i & 15u)) & 1u) << 4;
    precise float v = float(q) * float(b.d) + float(b.m);
    return float16_t(v);
}
#elif defined(W_Q4_K) || defined(W_Q5_K)
#define QK 256
// 8 sub-blocks of 32 with 6-bit scale / minimum (12 bytes); qs[32c + l] holds element 64c + l
// (low nibble) and 64c + 32 + l (high nibble); Q5_K: the 5th bit of element 32j + l is bit j of qh[l]
#if defined(W_Q4_K)
layout(buffer_reference, std430, buffer_reference_align = 2) buffer Blk { float16_t d, dmin; uint16_t sc[6]; uint16_t qs[64]; };
#else
layout(buffer_reference, std430, buffer_reference_align = 2) buffer Blk { float16_t d, dmin; uint16_t sc[6]; uint16_t qh[16]; uint16_t qs[64]; };
#endif
uint scbyte(const in Blk b, uint a) { return (uint(b.sc[a >> 1]) >> ((a & 1u) << 3)) & 0xffu; }
float16_t decode(const in Blk b, const in uint32_t bc[2], const in uint32_t ib[2]) {
    uint w = ib[1], j = w >> 5, sc, m;
    if (j < 4u) {
        sc = scbyte(b, j) & 63u;
        m = scbyte(b, j + 4u) & 63u;
    } else {
        uint b8 = scbyte(b, j + 4u);
        sc = (b8 & 15u) | ((scbyte(b, j - 4u) >> 6) << 4);
        m = (b8 >> 4) | ((scbyte(b, j) >> 6) << 4);
    }
    uint a = 32u * (w >> 6) + (w & 31u);
    uint q = (uint(b.qs[a >> 1]) >> (((a & 1u) << 3) + ((w & 32u) >> 3))) & 15u;
#if defined(W_Q5_K)
    uint l = w & 31u;
    q |= ((uint(b.qh[l >> 1]) >> (((l & 1u) << 3) + j)) & 1u) << 4;
#endif
    float d1 = float(b.d) * float(sc), m1 = float(b.dmin) * float(m);
    precise float v = d1 * float(q) - m1;
    return float16_t(v);
}
#elif defined(W_Q6_K)
#define QK 256
// two halves of 128; in a half, quarter c of 32: low 4 bits from ql[32 (c & 1) + l] (nibble c >> 1),
// high 2 bits from qh[l] (bits 2c); one int8 scale per 16 elements
layout(buffer_reference, std430, buffer_reference_align = 2) buffer Blk { uint16_t ql[64]; uint16_t qh[32]; uint16_t sc[8]; float16_t d; };
float16_t decode(const in Blk b, const in uint32_t bc[2], const in uint32_t ib[2]) {
    uint w = ib[1], hf = w >> 7, c = (w >> 5) & 3u, l0 = w & 31u;
    uint a = 64u * hf + 32u * (c & 1u) + l0, h = 32u * hf + l0, s = 8u * hf + 2u * c + (l0 >> 4);
    uint lo = (uint(b.ql[a >> 1]) >> (((a & 1u) << 3) + 4u * (c >> 1))) & 15u;
    uint hi = (uint(b.qh[h >> 1]) >> (((h & 1u) << 3) + 2u * c)) & 3u;
    int sc = int(uint(b.sc[s >> 1]) << (24u - ((s & 1u) << 3))) >> 24;
    float ds = float(b.d) * float(sc);
    return float16_t(ds * float(int(lo | (hi << 4)) - 32));
}
#else
#error "matmul_cm2.comp: define W_F16, W_BF16 or one of W_Q4_0, W_Q8_0, W_Q4_1, W_Q5_0, W_Q5_1, W_Q4_K, W_Q5_K, W_Q6_K"
#endif
layout(std430, binding = 2) readonly buffer W { uvec4 wb[]; };
#endif

// bias of column c of this tile (elements past N are never stored)
float add_bias(const in uint32_t r, const in uint32_t c, const in float v, const in uint32_t c0) {
    uint gc = min(c0 + c, pc.u[1] - 1u);
    return v + bias[OFF_C + gc];
}

void main() {
    uint M = pc.u[0], N = pc.u[1], K = pc.u[2];
    uint row0 = gl_WorkGroupID.y * BM, col0 = gl_WorkGroupID.x * BN;
    uint ksplit = max(pc.u[7], 1u), kc = ((K + ksplit - 1u) / ksplit + BK - 1u) / BK * BK;
    uint k0 = gl_WorkGroupID.z * kc, k1 = min(K, k0 + kc);

    // x: M rows of K (halves, or floats with XF32); columns past k1 (this split's end) read as 0
    tensorLayoutNV<2, CLAMP> tx = createTensorLayoutNV(2, CLAMP);
    tx = setTensorLayoutDimensionNV(tx, M, k1);
    tx = setTensorLayoutStrideNV(tx, K, 1);
    // W: N rows of K (in blocks of QK for the decoded types), read transposed into B
    tensorLayoutNV<2, CLAMP> tw = createTensorLayoutNV(2, CLAMP);
#if QK > 1
    tw = setTensorLayoutBlockSizeNV(tw, 1, uint(QK));
#endif
    tw = setTensorLayoutDimensionNV(tw, N, k1);
    tw = setTensorLayoutStrideNV(tw, K / uint(QK), 1);
    tensorViewNV<2, false, 1, 0> tr = createTensorViewNV(2, false, 1, 0);

    MC acc = MC(0.0);
    for (uint k = k0; k < k1; k += BK) {
        MA a;
        MB b;
#ifdef XF32
        coopmat<float, gl_ScopeWorkgroup, BM, BK, gl_MatrixUseAccumulator> af;
        coopMatLoadTensorNV(af, x4, OFF_A >> 2, sliceTensorLayoutNV(tx, row0, BM, k, BK));
        a = MA(af);
#else
        coopMatLoadTensorNV(a, xh8, OFF_A >> 3, sliceTensorLayoutNV(tx, row0, BM, k, BK));
#endif
#if defined(W_F16)
        coopMatLoadTensorNV(b, w8, OFF_B >> 3, sliceTensorLayoutNV(tw, col0, BN, k, BK), tr);
#else
        // OFF_B is in bytes (quantised types) or halves (bf16); the host keeps it 16-byte aligned
#if QK > 1
        coopMatLoadTensorNV(b, wb, OFF_B >> 4, sliceTensorLayoutNV(tw, col0, BN, k, BK), tr, decode);
#else
        coopMatLoadTensorNV(b, wb, OFF_B >> 3, sliceTensorLayoutNV(tw, col0, BN, k, BK), tr, decode);
#endif
#endif
        acc = coopMatMulAdd(a, b, acc);
    }
    if (pc.u[3] != 0u) coopMatPerElementNV(acc, acc, add_bias, col0);

    // y (or split z's partial product): rows M, columns n0 .. n0 + N of a row stride u[5];
    // out-of-range rows and columns are dropped by the layout's clamp
    tensorLayoutNV<3, CLAMP> ty = createTensorLayoutNV(3, CLAMP);
    ty = setTensorLayoutDimensionNV(ty, ksplit, M, pc.u[4] + N);
    ty = setTensorLayoutStrideNV(ty, pc.u[8], pc.u[5], 1);
    coopMatStoreTensorNV(acc, y4, OFF_D >> 2, sliceTensorLayoutNV(ty, gl_WorkGroupID.z, 1, row0, BM, pc.u[4] + col0, BN));
}

// Shared by every loom compute shader: the one push-constant block all pipelines use, and the
// binding convention. Binding 0 is the destination; 1..4 are src0..src3; 5 is scratch; 6 a second
// destination (the 8-bit x an epilogue writes: matvec_dp.comp, attn_combine.comp).
// off[b] is binding b's first element (in the binding's own element type): descriptors start at
// an aligned offset, and the remainder travels here.
#extension GL_EXT_control_flow_attributes : enable

layout(push_constant) uniform PC {
    uint off[7];
    uint u[16];
    float f[6];
} pc;

#define OFF_D pc.off[0]
#define OFF_A pc.off[1]
#define OFF_B pc.off[2]
#define OFF_C pc.off[3]
#define OFF_E pc.off[4]
#define OFF_S pc.off[5]
#define OFF_Q pc.off[6]

// Large grids are dispatched as (x, y) with x <= 32768: this is the flat workgroup index.
uint wg_linear() { return gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x; }

// Attention splits never get fewer keys than this: with a short cache, fewer splits do the work
// (and attn_combine.comp merges fewer partials). Both shaders derive the count from pos[s].
#define ATT_MIN_CHUNK 64u
uint att_chunk(uint L, uint nsplit) { return max((L + nsplit - 1u) / nsplit, ATT_MIN_CHUNK); }
// A ring cache (graph.h ATTENTION ip[5], as the bits of f[3]): logical key j at row j % C.
bool att_ring() { return floatBitsToUint(pc.f[3]) != 0u; }
// Keys [0, L) query position p may see: p + 1, capped by the cache unless it is a ring.
uint att_len(int p, uint C) { return p < 0 ? 0u : att_ring() ? uint(p) + 1u : min(uint(p) + 1u, C); }
// First key of query position p (keys [att_lo, L)): with a sliding window of W keys (graph.h;
// the bits of f[2], 0 = none) p - W + 1, else 0.
uint att_lo(int p, uint L) {
    uint W = floatBitsToUint(pc.f[2]);
    uint lo = W > 0u && p >= 0 && uint(p) + 1u > W ? uint(p) + 1u - W : 0u;
    return min(lo, L);
}

// tanh without the NaN some drivers' tanh gives for large |y| (inf / inf): (1 - e) / (1 + e) with
// e = exp(-2|y|), sign restored; below |y| = 1/8, where 1 - e cancels, the odd Taylor polynomial to
// y^7. Logit soft-capping (SOFTCAP, attention's fp[1]).
float loom_tanh(float y) {
    float a = abs(y);
    if (a < 0.125) {
        float y2 = y * y;
        return y + y * y2 * (-1.0 / 3.0 + y2 * (2.0 / 15.0 - y2 * (17.0 / 315.0)));
    }
    float e = exp(-2.0 * a);
    return sign(y) * ((1.0 - e) / (1.0 + e));
}

// gelu_tanh(x) = 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3):
// the second form does not cancel for x << 0 (graph.h).
float loom_gelu(float x) {
    float u = 0.7978845608028654 * x * (1.0 + 0.044715 * x * x);
    return x / (1.0 + exp(-2.0 * u));
}

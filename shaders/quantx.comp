#version 450
#extension GL_GOOGLE_include_directive : require
// x of a decode GEMV (M <= 8 rows of K) quantised to 8 bits for matvec_dp.comp, once per matmul:
// per 32-element block b of row m (i = m * K / 32 + b), an invocation writes
//   q[2i], q[2i + 1]  the 32 values as int8, 4 per word: q_j = round(x_j / d) in [-127, 127]
//   h[i]              vec4(d, X0, X1, SS): d = max_j |x_j| / 127 (0 for an all-zero block); X0, X1
//                     the sums of x over the block's halves (f32, not the rounded values: the
//                     minimum terms of Q4_1, Q4_K, ... are then exact); SS the sum of squares of the
//                     raw x for a fused RMSNORM (below)
// so that |x_j - d q_j| <= d / 2 (plus the rounding of x / d).
// Fused producers as in matvec.comp: XMODE 1 (RMSNORM): x = src * w (binding 4, when u[7]); the
// row's 1 / rms is not applied here but by the GEMV to its finished sum (it sums the blocks' SS), since
// scaling a block scales d and leaves q alone. XMODE 2 (SWIGLU): x = silu(gate) * up (binding 4).
// Bindings: 0 = q (uvec4), 3 = h (vec4), 1 = x, 4 = norm weight / up. Push constants: u[0] = M * K / 32
// blocks, u[1] = K / 32, u[2] = K (the row stride of x), u[6] = x (and binding 4) 16-byte aligned,
// u[7] = RMSNORM has a weight. Spec constants: 0 = workgroup size, 1 = XMODE.
#include "common.glsl"
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint XMODE = 0;
layout(std430, binding = 0) writeonly buffer Q { uvec4 q[]; };
layout(std430, binding = 3) writeonly buffer H { vec4 h[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer X4 { vec4 x4[]; };
layout(std430, binding = 4) readonly buffer E { float e1[]; };
layout(std430, binding = 4) readonly buffer E4 { vec4 e4[]; };

float silu(float g) { return g / (1.0 + exp(-g)); }

void main() {
    uint i = wg_linear() * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
    if (i >= pc.u[0]) return;
    uint nb = pc.u[1], m = i / nb, k0 = (i % nb) * 32u, o = m * pc.u[2] + k0;
    bool vec = pc.u[6] != 0u;
    vec4 v[8];
    float ss = 0.0;
    [[unroll]] for (uint j = 0u; j < 8u; j++) {
        uint a = OFF_A + o + 4u * j;
        v[j] = vec ? x4[a >> 2] : vec4(x[a], x[a + 1u], x[a + 2u], x[a + 3u]);
        if (XMODE == 1u) {
            ss += dot(v[j], v[j]);
            if (pc.u[7] != 0u) {
                uint e = OFF_E + k0 + 4u * j;
                v[j] *= vec ? e4[e >> 2] : vec4(e1[e], e1[e + 1u], e1[e + 2u], e1[e + 3u]);
            }
        } else if (XMODE == 2u) {
            uint e = OFF_E + o + 4u * j;
            vec4 u = vec ? e4[e >> 2] : vec4(e1[e], e1[e + 1u], e1[e + 2u], e1[e + 3u]);
            v[j] = vec4(silu(v[j].x), silu(v[j].y), silu(v[j].z), silu(v[j].w)) * u;
        }
    }
    vec4 am = vec4(0.0);
    [[unroll]] for (uint j = 0u; j < 8u; j++) am = max(am, abs(v[j]));
    float amax = max(max(am.x, am.y), max(am.z, am.w));
    float d = amax / 127.0, id = amax > 0.0 ? 127.0 / amax : 0.0;
    uint w[8];
    [[unroll]] for (uint j = 0u; j < 8u; j++) {
        ivec4 c = clamp(ivec4(roundEven(v[j] * id)), ivec4(-127), ivec4(127));
        uvec4 b = uvec4(c) & 0xffu;
        w[j] = b.x | (b.y << 8) | (b.z << 16) | (b.w << 24);
    }
    q[OFF_D + 2u * i] = uvec4(w[0], w[1], w[2], w[3]);
    q[OFF_D + 2u * i + 1u] = uvec4(w[4], w[5], w[6], w[7]);
    float x0 = dot(v[0] + v[1] + v[2] + v[3], vec4(1.0)), x1 = dot(v[4] + v[5] + v[6] + v[7], vec4(1.0));
    h[OFF_C + i] = vec4(d, x0, x1, ss);
}

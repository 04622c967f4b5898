#version 450
#extension GL_GOOGLE_include_directive : require
// MOE (graph.h) prefill: groups the routed slots by expert for matmul_q.comp's MOE build. One
// workgroup. Reads the routes moe_route.comp wrote (binding 1: per row s, k expert ids as float
// bits, then k weights) and writes to binding 0 (uint): [0, S*k) the slots r = s * k + i ordered by
// expert (a counting sort: counts, their prefix sums, a scatter; within an expert in any order,
// which changes no output), then at S*k the tile table: per tile of up to u[3] consecutive slots of
// one expert (expert, first, end of the expert's slots), u[4] entries, those past the last tile
// with expert ~0u.
// u[0] = S, u[1] = E (<= 1024), u[2] = k, u[3] = tile rows, u[4] = tile entries.
#include "common.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) writeonly buffer G { uint grp[]; };
layout(std430, binding = 1) readonly buffer R { float route[]; };
shared uint cnt[1024], pos[1024];
shared uint ntile;

uint expert_of(uint r, uint k) { return floatBitsToUint(route[OFF_A + (r / k) * 2u * k + r % k]); }

void main() {
    uint t = gl_LocalInvocationID.x, E = pc.u[1], k = pc.u[2], SK = pc.u[0] * k, BM = pc.u[3];
    for (uint e = t; e < E; e += 256u) cnt[e] = 0u;
    barrier();
    for (uint r = t; r < SK; r += 256u) atomicAdd(cnt[expert_of(r, k)], 1u);
    barrier();
    if (t == 0u) { // E and the tile count are small (<= 1024, S*k / BM + E): one invocation
        uint p = 0u, nt = 0u;
        for (uint e = 0u; e < E; e++) {
            uint c = cnt[e];
            pos[e] = p;
            for (uint q = 0u; q < c; q += BM, nt++) {
                grp[OFF_D + SK + 3u * nt] = e;
                grp[OFF_D + SK + 3u * nt + 1u] = p + q;
                grp[OFF_D + SK + 3u * nt + 2u] = p + c;
            }
            p += c;
        }
        ntile = nt;
    }
    barrier();
    for (uint r = t; r < SK; r += 256u) grp[OFF_D + atomicAdd(pos[expert_of(r, k)], 1u)] = r;
    for (uint j = ntile + t; j < pc.u[4]; j += 256u) grp[OFF_D + SK + 3u * j] = 0xffffffffu;
}

#version 450
#extension GL_GOOGLE_include_directive : require
// EMBED: out[s, :] = table[ids[s], :]. The table binding may hold only rows [v0, v1) of a table
// too large for one descriptor; rows outside are written by another dispatch.
#include "common.glsl"
#define W_BINDING 1
#include "wload.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) writeonly buffer D { float d[]; };
layout(std430, binding = 2) readonly buffer I { int ids[]; };

void main() {
    uint S = pc.u[0], Dim = pc.u[1], v0 = pc.u[2], v1 = pc.u[3];
    uint i = wg_linear() * 256u + gl_LocalInvocationID.x;
    if (i >= S * Dim) return;
    uint s = i / Dim, c = i - s * Dim;
    int id = ids[OFF_B + s];
    if (id < int(v0) || id >= int(v1)) {
        // out-of-range ids are rejected by the session; a chunked table leaves them to another pass
        if (v0 == 0u && (id < 0 || uint(id) >= pc.u[4])) d[OFF_D + i] = 0.0;
        return;
    }
    d[OFF_D + i] = wload(OFF_A + (uint(id) - v0) * Dim + c);
}

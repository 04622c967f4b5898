#version 450
#extension GL_GOOGLE_include_directive : require
// PERMUTE: contiguous copy with axes permuted. u[0..3] = output shape (outermost first, padded
// with leading 1s), u[4..7] = source stride (elements) of each output axis, u[8] = n.
#include "common.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) writeonly buffer D { float d[]; };
layout(std430, binding = 1) readonly buffer A { float a[]; };

void main() {
    uint i = wg_linear() * 256u + gl_LocalInvocationID.x;
    if (i >= pc.u[8]) return;
    uint r = i, src = 0u;
    [[unroll]] for (int k = 3; k >= 0; k--) {
        uint c = r % pc.u[k];
        r /= pc.u[k];
        src += c * pc.u[4 + k];
    }
    d[OFF_D + i] = a[OFF_A + src];
}

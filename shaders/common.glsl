// Shared by every loom compute shader: the one push-constant block all pipelines use, and the
// binding convention. Binding 0 is the destination; 1..4 are src0..src3; 5 is scratch.
// off[b] is binding b's first element (in the binding's own element type): descriptors start at
// an aligned offset, and the remainder travels here.
#extension GL_EXT_control_flow_attributes : enable

layout(push_constant) uniform PC {
    uint off[6];
    uint u[12];
    float f[4];
} pc;

#define OFF_D pc.off[0]
#define OFF_A pc.off[1]
#define OFF_B pc.off[2]
#define OFF_C pc.off[3]
#define OFF_E pc.off[4]
#define OFF_S pc.off[5]

// Large grids are dispatched as (x, y) with x <= 32768: this is the flat workgroup index.
uint wg_linear() { return gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x; }

// Attention splits never get fewer keys than this: with a short cache, fewer splits do the work
// (and attn_combine.comp merges fewer partials). Both shaders derive the count from pos[s].
#define ATT_MIN_CHUNK 64u
uint att_chunk(uint L, uint nsplit) { return max((L + nsplit - 1u) / nsplit, ATT_MIN_CHUNK); }

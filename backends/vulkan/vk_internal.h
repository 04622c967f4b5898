/* Internals of the Vulkan backend, shared by its .c files (not a public contract).
 *
 *   vk_device.c    instance, device selection, memory, buffers, staging, submission
 *   vk_pipeline.c  the one pipeline layout, pipelines per (shader, spec constants), disk cache
 *   vk_fuse.c      the planner pass "vulkan-fuse": which producers fold into their readers
 *   vk_record.c    op -> dispatch recording with hazard tracking; compute_node / compute_plan
 *   vk_backend.c   the loom_backend_ops table, supports(), device listing
 */
#ifndef LOOM_VK_INTERNAL_H
#define LOOM_VK_INTERNAL_H

#include "backends/backend.h"
#include "loom_spirv.h"
#include "core/util.h"

#include <vulkan/vulkan.h>

#include "backends/vulkan/vk_cm2.h"

/* VK_KHR_cooperative_matrix arrived in Vulkan headers 1.3.255; Debian 12 ships 1.3.239. The few
 * definitions used here, as the Khronos headers give them, when the installed headers lack them. */
#ifndef VK_KHR_cooperative_matrix
#define VK_KHR_cooperative_matrix 1
#define VK_KHR_COOPERATIVE_MATRIX_EXTENSION_NAME "VK_KHR_cooperative_matrix"
#define VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_KHR ((VkStructureType)1000506000)
#define VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_KHR ((VkStructureType)1000506001)
typedef enum VkComponentTypeKHR {
    VK_COMPONENT_TYPE_FLOAT16_KHR = 0,
    VK_COMPONENT_TYPE_FLOAT32_KHR = 1,
    VK_COMPONENT_TYPE_MAX_ENUM_KHR = 0x7FFFFFFF
} VkComponentTypeKHR;
typedef enum VkScopeKHR { VK_SCOPE_SUBGROUP_KHR = 3, VK_SCOPE_MAX_ENUM_KHR = 0x7FFFFFFF } VkScopeKHR;
typedef struct VkCooperativeMatrixPropertiesKHR {
    VkStructureType sType;
    void *pNext;
    uint32_t MSize, NSize, KSize;
    VkComponentTypeKHR AType, BType, CType, ResultType;
    VkBool32 saturatingAccumulation;
    VkScopeKHR scope;
} VkCooperativeMatrixPropertiesKHR;
typedef struct VkPhysicalDeviceCooperativeMatrixFeaturesKHR {
    VkStructureType sType;
    void *pNext;
    VkBool32 cooperativeMatrix;
    VkBool32 cooperativeMatrixRobustBufferAccess;
} VkPhysicalDeviceCooperativeMatrixFeaturesKHR;
typedef VkResult(VKAPI_PTR *PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR)(
    VkPhysicalDevice, uint32_t *, VkCooperativeMatrixPropertiesKHR *);
#endif

/* LOOM_VK_KUNIT, the unit of the Q4_K / Q5_K / Q6_K decode GEMVs (vk_record.c rec_matmul): auto; one or
 * two 32-weight sub-blocks; session 13's rule (one on rows K <= 2048, else two); half-pair units (8-bit-x
 * GEMV only) on every matrix */
typedef enum { VK_KUNIT_AUTO, VK_KUNIT_1, VK_KUNIT_2, VK_KUNIT_S13, VK_KUNIT_HP } vk_kunit;
#define VK_SPIN_US_GPU 5000u /* LOOM_VK_SPIN_US unset, on a GPU (vk_device.c) */
#define VK_NBIND 7          /* bindings of the one descriptor-set layout: dst, src0..3, scratch, dst2 */
#define VK_PC_WORDS 29      /* push constants: off[7], u[16], f[6] (shaders/common.glsl); 116 of the 128 bytes every device has */
#define VK_STAGING_HALF (32u << 20)

/* One piece of a buffer. Weights larger than the largest allocation are split into pieces that
 * overlap by `overlap` bytes, so any range up to that size lies whole inside one piece. */
typedef struct vk_seg {
    VkBuffer buf;
    VkDeviceMemory mem;
    size_t start, size; /* bytes of the logical buffer this piece holds */
} vk_seg;

struct loom_buffer {
    size_t size;      /* logical bytes */
    uint64_t serial;  /* unique per allocation: a recorded plan checks it still binds the same */
    int n_seg;
    vk_seg *seg;
    bool readonly;    /* weights: overlapping pieces are never written by shaders */
};

typedef struct vk_pipeline {
    loom_spv_id shader;
    uint32_t spec[4];
    VkPipeline pipe;
} vk_pipeline;

typedef struct vk_dev {
    VkInstance inst;
    VkPhysicalDevice phys;
    VkDevice dev;
    VkQueue queue;
    uint32_t qfam;
    VkPhysicalDeviceProperties props;
    VkPhysicalDeviceMemoryProperties mem;
    char name[VK_MAX_PHYSICAL_DEVICE_NAME_SIZE];
    uint8_t uuid[VK_UUID_SIZE];
    bool verbose;
    bool trace_rec; /* LOOM_VK_VERBOSE=2: a stderr line per recorded dispatch (vk_record.c dispatch()) */

    /* capabilities and limits (limits can be lowered by env for tests, see docs) */
    bool has_budget, f16_storage, subgroup_arith, timestamps;
    bool pipe_stats; /* LOOM_VK_PIPE_STATS=1: each new pipeline's compiler statistics on stderr (vk_pipeline.c) */
    bool coopmat; /* tensor-core prefill matmul (matmul_cm.comp): device, feature and shaders */
    uint32_t cm_big_tiles; /* its 128 x 128 tiles from this many such tiles on (else 64 x 64) */
    bool qcm_tiles; /* quantised W on it: dequantised in the tile loads, not first to f16 scratch */
    uint32_t cm_variant; /* index into vk_record.c's cm_variants (0: matmul_cm.comp); LOOM_VK_CM_VARIANT */
    uint32_t ksplit;     /* LOOM_VK_CM_KSPLIT: the K splits of every tiled matmul (1..8), 0: vk_record.c's choice */
    uint32_t cm_min_m;   /* the variant serves matmuls of at least this many rows (0 when forced by the knob) */
    bool cm_qtile;       /* quantised W dequantised in the tile loads of the variant (sg64: every type; default with coopmat)
                          * (matmul_cmv.comp, W_Q*) instead of first to f16 scratch; without cooperative
                          * matrices, the tiled prefill's matmul_q.comp QTILE build (the decoders' lavapipe check) */
    bool cm_qtile_all;   /* LOOM_VK_CM_QTILE=1 set: IQ4_NL/IQ4_XS too (left out by default: 38% slower, vk_device.c) */
    uint32_t cm2; /* LOOM_VK_CM2: 1 + vk_cm2.c's tile variant for the tensor-core matmuls; 0 off */
    bool cm2_noq; /* LOOM_VK_CM2_QUANT=0: quantised W stays on the KHR path (its f16 copy) */
    VkPhysicalDeviceCooperativeMatrix2FeaturesNV cm2f; /* what vkCreateDevice enables for it */
    bool no_fa;          /* LOOM_VK_NO_FA or LOOM_VK_FA=row: prefill attention one query row per workgroup (attention.comp) */
    bool attn_cm;        /* prefill attention on cooperative matrices (attn_cm.comp): the default with coopmat;
                          * LOOM_VK_FA=fa keeps attn_fa.comp (vk_device.c) */
    uint32_t attn_cm_var; /* its builds: LOOM_VK_FA=cm 0 plain; cms 1 (ROWSCALE_SHARED: O rescaled through shared
                           * memory); cmp and the default 2 (PREFETCH: the next K/V tile's loads in flight
                           * during the products); cmp8 3 (PREFETCH with 8 subgroups, head dims <= 64) */
    bool attn_cm_forced; /* LOOM_VK_FA named an attn_cm build: also for models whose matmul weights are all f32 */
    uint64_t n_attn_cm;  /* attn_cm.comp dispatches recorded so far (describe() shows them: the tests' proof it ran) */
    uint64_t fuse_max_nk; /* RMSNORM / SWIGLU fused into GEMVs of at most this many weights */
    uint32_t gemv_wgs;   /* decode GEMV: fewer rows per workgroup until it has this many workgroups */
    uint32_t gemv_loads; /* decode GEMV: 8-element loads in flight per invocation (0: 2) */
    bool gemv_u2;        /* LOOM_VK_GEMV_U2=1: the 8-bit-x GEMV's half-pair K units two a pass */
    uint32_t moe;        /* LOOM_VK_MOE: 0 auto (expert GEMVs for few routed slots, else grouped tiles), 1 naive
                          * (moe_mm.comp, one workgroup per output element), 2 gemv, 3 mm (vk_record.c rec_moe) */
    uint32_t att_gw;     /* LOOM_VK_ATT_GW: decode attention's query heads a workgroup at most (default 1) */
    bool no_rkv;         /* LOOM_VK_RKV=0: no "rope-kv-attention" fold (vk_fuse.c) */
    uint32_t gemv_q;     /* quantised decode GEMV: 0 matvec.comp, else matvec_qb.comp with this many rows per
                          * group; VK_GEMV_Q_AUTO: per type and size (vk_record.c's qb_rows_default) */
    bool gemv_dp;        /* LOOM_VK_GEMV_Q=dp*: those rows on matvec_dp.comp (x quantised to 8 bits first) */
    bool gemv_dp_auto;   /* LOOM_VK_GEMV_Q=dpa: rows per invocation per matrix (vk_record.c) */
    uint32_t spin_us;    /* fence waits poll this long before blocking (LOOM_VK_SPIN_US; vk_device.c wait_fence) */
    vk_kunit kunit;      /* LOOM_VK_KUNIT: the Q4_K / Q5_K / Q6_K decode GEMV's unit (vk_record.c) */
    bool gemv_dp_default; /* LOOM_VK_GEMV_Q unset on a GPU with integer dot products: matvec_dp.comp with 1 row
                           * per invocation for every block type (vk_record.c gemv_q_rows) */
    bool idot;           /* shaderIntegerDotProduct enabled (and not LOOM_VK_NO_IDOT): matvec_dpi_* */
    uint32_t subgroup_size;
    size_t max_alloc, max_range, align;
    size_t piece, overlap; /* weights: largest piece, and how much consecutive pieces share */
    int mt_device, mt_upload, mt_download; /* memory type indices */
    int heap_device;

    /* submission: plans go out on `fence`, one-shot buffers (reads, compute_node) on
     * `once_fence`; each command buffer is reused only after its fence signalled */
    VkCommandPool cmdpool;
    VkCommandBuffer cmd_once, cmd_pending;
    bool pending_open, in_flight, once_busy;
    VkFence fence, once_fence;

    /* staging: two halves so a chunk is copied while the next one is filled */
    VkBuffer st_buf;
    VkDeviceMemory st_mem;
    uint8_t *st_map;
    VkCommandBuffer st_cmd[2];
    VkFence st_fence[2];
    bool st_busy[2];

    /* pipelines */
    VkDescriptorSetLayout dsl;
    VkPipelineLayout layout;
    VkPipelineCache pcache;
    char cache_path[1024];
    bool cache_dirty;
    VkShaderModule modules[LOOM_SPV_COUNT];
    vk_pipeline *pipes;
    int n_pipes, cap_pipes;

    VkBuffer dummy; /* bound to unused bindings */
    VkDeviceMemory dummy_mem;


    uint64_t next_serial;
    size_t allocated;
    loom_plan_pass fuse_pass; /* vk_fuse.c, handed to the planner */
} vk_dev;

/* vk_device.c */
vk_dev *vk_dev_open(const loom_backend_opts *o);
void vk_dev_close(vk_dev *d);
VkInstance vk_instance_new(bool quiet);
const char *vk_result_str(VkResult r);
const char *vk_type_str(VkPhysicalDeviceType t);
/* Whether physical device p offers the device extension `name` (the queries below and vk_dev_open) */
bool vk_dev_has_ext(VkPhysicalDevice p, const char *name);
/* The A/B knobs whose values are names (LOOM_VK_GEMV_Q, LOOM_VK_CM_VARIANT, LOOM_VK_CM2) read
 * them from a table of n structs of `size` bytes whose first member is the name (const char *):
 * vk_knob_find gives the index of s there (-1: not there); vk_knob_names appends the names, joined
 * by ", ", to the string in buf (len bytes), for the message that lists the valid values. */
int vk_knob_find(const void *tab, size_t n, size_t size, const char *s);
const char *vk_knob_names(char *buf, size_t len, const void *tab, size_t n, size_t size);
#define VK_KNOB_FIND(tab, n, s) vk_knob_find((tab), (n), sizeof *(tab), (s))
#define VK_KNOB_NAMES(buf, tab, n) vk_knob_names((buf), sizeof(buf), (tab), (n), sizeof *(tab))
/* The knobs that fall back instead of failing (LOOM_VK_GEMV_Q, LOOM_VK_KUNIT): the index of getenv(var)'s
 * value in tab, -1 when it is unset or empty; an unknown value is one line on stderr listing the
 * valid ones, then the index `fallback`. */
int vk_knob_env(const char *var, const void *tab, size_t n, size_t size, int fallback);
#define VK_KNOB_ENV(var, tab, n, fallback) vk_knob_env((var), (tab), (n), sizeof *(tab), (fallback))
/* Cooperative matrices of physical device p: true when the extension and feature are there and
 * 16x16x16 f16 x f16 + f32 at subgroup scope is offered (the shape matmul_cm.comp uses); desc
 * (may be NULL) gets the f16 shapes, e.g. "16x16x16 16x8x16 f16->f32", or why not. */
bool vk_coopmat_query(VkInstance inst, VkPhysicalDevice p, char *desc, size_t n);

/* 4 x 8-bit packed integer dot products (VK_KHR_shader_integer_dot_product's shaderIntegerDotProduct):
 * the matvec_dpi_* decode GEMVs (LOOM_VK_GEMV_Q=dp*) */
bool vk_idot_query(VkPhysicalDevice p);

/* The tensor-core prefill matmul variants (LOOM_VK_CM_VARIANT, vk_record.c): the index of `name`
 * (0 = "base", matmul_cm.comp), or -1 with the error set when this build lacks it or the device's
 * shared memory is too small for it; and the name of index i. */
int vk_cm_variant_find(const vk_dev *d, const char *name);
const char *vk_cm_variant_name(uint32_t i);
/* The default variant's index (sg64; 0 where the build or the device's shared memory has none) */
uint32_t vk_cm_variant_default(const vk_dev *d);
/* vk_cm2.c: LOOM_VK_CM2 (after d->coopmat is known): sets d->cm2 / d->cm2f when the device and
 * build can take it, else prints one line and leaves it off; -1 (error set) for an unknown value.
 * vk_cm2_pick: the variant's tile, whether it reads f32 x, and its shader for weight type t (false: none);
 * vk_cm2_name: the variant's name, "off" when off. */
int vk_cm2_setup(vk_dev *d, VkInstance inst, VkPhysicalDevice phys);
bool vk_cm2_pick(const vk_dev *d, loom_dtype t, uint32_t *bm, uint32_t *bn, bool *x32, loom_spv_id *sh);
const char *vk_cm2_name(const vk_dev *d);
/* vk_dev.gemv_q when LOOM_VK_GEMV_Q is unset: rows per invocation chosen per type and size */
#define VK_GEMV_Q_AUTO UINT32_MAX

loom_buffer *vk_buf_alloc(vk_dev *d, size_t nbytes, bool weights);
void vk_buf_free(vk_dev *d, loom_buffer *b);
int vk_buf_write(vk_dev *d, loom_buffer *b, size_t off, const void *src, size_t n);
int vk_buf_read(vk_dev *d, loom_buffer *b, size_t off, void *dst, size_t n);
int vk_buf_zero(vk_dev *d, loom_buffer *b, size_t off, size_t n);
int vk_buf_copy(vk_dev *d, loom_buffer *dst, size_t doff, loom_buffer *src, size_t soff, size_t n);
/* The piece holding [off, off+n): returns its index, -1 when the range crosses pieces. */
int vk_buf_seg(const loom_buffer *b, size_t off, size_t n);
/* Command buffers: begin a one-shot buffer (after the previous submission finished). */
VkCommandBuffer vk_begin_once(vk_dev *d);
/* End cmd and submit it after any pending small writes; wait when `wait`. */
int vk_submit(vk_dev *d, VkCommandBuffer cmd, bool wait);
int vk_wait(vk_dev *d);
/* Full barrier from transfer/compute writes to compute/transfer reads and writes. */
void vk_barrier_all(VkCommandBuffer cmd);

/* vk_pipeline.c */
int vk_pipelines_init(vk_dev *d);
void vk_pipelines_free(vk_dev *d);
/* spec: workgroup size (0 = 128) and three shader-specific constants; NULL = all default */
VkPipeline vk_pipeline_get(vk_dev *d, loom_spv_id s, const uint32_t spec[4]);

/* Does MATMUL i of g run as the decode GEMV (at most 8 rows of x, with subgroup arithmetic)? The
 * fusion pass and the recorder must agree on it. */
static inline bool vk_gemv_path(const vk_dev *d, const loom_graph *g, int i) {
    const loom_node *n = &g->nodes[i], *w = &g->nodes[n->src[1]];
    return d->subgroup_arith && w->ne[1] > 0 && loom_node_nelem(&g->nodes[n->src[0]]) / w->ne[1] <= 8;
}

/* vk_fuse.c */
const loom_plan_pass *vk_fuse_pass(vk_dev *d);

/* vk_record.c */
int vk_compute_node(vk_dev *d, const loom_exec_ctx *x, int node);
int vk_plan_prepare(vk_dev *d, loom_plan *p, const loom_exec_ctx *x);
void vk_plan_release(vk_dev *d, loom_plan *p);
int vk_compute_plan(vk_dev *d, const loom_exec_ctx *x);
bool vk_supports(vk_dev *d, const loom_graph *g, int i);

#endif

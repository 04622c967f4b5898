/* Recording ops into command buffers.
 *
 * Every node becomes one or more dispatches of a shader (shaders/NAME.comp). A dispatch binds up
 * to six tensor ranges; the descriptor starts at the range's offset rounded down to the device's
 * alignment and the remainder travels as an element offset in the push constants.
 *
 * Hazards: the recorder keeps the byte ranges read and written since the last barrier and puts a
 * barrier in front of a dispatch only when it reads what a pending dispatch wrote, or writes what
 * a pending dispatch read or wrote (the arena reuses memory, so write-after-read matters too).
 *
 * Plans are recorded once (plan_prepare) and the command buffer is replayed on every run. Nothing
 * in it depends on the step: inputs live in the arena, and attention takes the cache length from
 * the pos buffer on the GPU. A plan remembers which buffers it bound (by serial number) and is
 * recorded again if the session hands it different ones.
 */
#include "backends/vulkan/vk_internal.h"

#include "core/qblock.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

typedef struct vk_range {
    VkBuffer buf;
    size_t lo, hi;
} vk_range;

typedef struct vk_arg {
    loom_buffer *b; /* NULL: unused binding (the dummy buffer is bound) */
    size_t off, len;
    size_t esize;   /* element size of the binding's type in the shader */
    bool write;
} vk_arg;

typedef struct vk_rec {
    vk_dev *d;
    VkCommandBuffer cmd;
    bool sizing;            /* first pass: count dispatches and scratch, record nothing */
    VkDescriptorPool *pools;
    int n_pools;
    vk_range *rd, *wr;
    int n_rd, n_wr, cap_rd, cap_wr;
    int n_dispatch, n_barrier;
    VkQueryPool qp;         /* timestamps, one after each dispatch plus one at the start */
    int *q_node;
    int cur_node;
    loom_buffer *scratch;
    size_t scratch_need;
    int k;                  /* the plan order's position being recorded; -1 outside a plan (compute_node) */
    /* The quantised x of the LOOM_VK_GEMV_Q=dp* GEMVs: a buffer of its own (qbuf), two regions of qreg
     * bytes, each the x (32 int8 a block, then 16-byte headers at hoff) in its first qdata bytes and
     * qcnt block counters after them (matvec_dp.comp's EPI, for an epilogue writing that region). The
     * sizing pass finds qreg_need (the largest x) and qcnt_need. */
    loom_buffer *qbuf;
    size_t qreg, qdata, qreg_need, qcnt, qcnt_need;
    int n_qfold;            /* quantisations written by their producer's epilogue (LOOM_VK_QX_FOLD) */
    bool qx_fold;           /* those epilogues allowed (a plan's recording; LOOM_VK_QX_FOLD=0: not) */
    bool acomb;             /* attention merges its key splits itself (attention_c*; LOOM_VK_ACOMB=0: not) */
    int gu_skip;            /* 1 + the up GEMV a gate/up dispatch (DP_GU) already computed, 0: none */
    int all_f32;            /* plan_all_f32's answer + 1 for the plan being recorded, 0: not looked at yet */
    /* x of the last dp GEMV as quantx.comp (or a producer's epilogue) left it in qbuf region `region`:
     * reused by the next dp GEMV of the same x (q/k/v, gate/up) until a dispatch writes its sources */
    struct {
        bool valid;
        vk_arg x, e;          /* the sources (x, and the norm weight / up of a folded producer) */
        int xmode;
        bool normw;
        uint64_t M, K;
        int region;
    } qx;
} vk_rec;

typedef struct vk_plan {
    uint64_t fp;            /* fingerprint of the buffers the recording binds */
    VkCommandBuffer cmd[2]; /* [0] plain, [1] with timestamps */
    bool recorded[2];
    VkDescriptorPool *pools;
    int n_pools;
    loom_buffer *scratch;
    loom_buffer *qbuf;      /* vk_rec.qbuf */
    size_t qreg, qdata, qcnt;
    bool qx_fold, acomb;    /* vk_rec's, read once per plan so that every recording agrees */
    VkQueryPool qp;
    int *q_node;
    int n_dispatch, n_barrier, n_qfold;
} vk_plan;

/* ---- binding resolution ---------------------------------------------------------------------- */

typedef struct vk_bound {
    VkBuffer buf;
    size_t off, range; /* descriptor */
    uint32_t elem;     /* element offset inside it */
} vk_bound;

static int resolve(vk_dev *d, const vk_arg *a, vk_bound *o) {
    if (!a->b) {
        *o = (vk_bound){.buf = d->dummy, .off = 0, .range = 256, .elem = 0};
        return 0;
    }
    int s = vk_buf_seg(a->b, a->off, a->len ? a->len : 1);
    if (s < 0) return loom_err("vulkan: a %zu-byte tensor at %zu crosses buffer pieces", a->len, a->off);
    const vk_seg *g = &a->b->seg[s];
    size_t so = a->off - g->start;
    size_t al = so & ~(d->align - 1), rem = so - al;
    if (rem % a->esize) return loom_err("vulkan: tensor offset %zu is not a multiple of its element size", a->off);
    size_t range = (rem + a->len + 15) & ~(size_t)15;
    if (range > g->size - al) range = g->size - al;
    if (range > d->max_range)
        return loom_err("vulkan: a %zu-byte tensor exceeds %s's largest storage binding (%zu bytes)", a->len,
                        d->name, d->max_range);
    *o = (vk_bound){.buf = g->buf, .off = al, .range = range ? range : 16, .elem = (uint32_t)(rem / a->esize)};
    return 0;
}

static uint32_t elem_off(vk_dev *d, const vk_arg *a) {
    vk_bound b;
    return resolve(d, a, &b) < 0 ? 1u : b.elem;
}

/* ---- hazards ------------------------------------------------------------------------------------ */

static bool overlaps(const vk_range *set, int n, const vk_range *r) {
    for (int i = 0; i < n; i++)
        if (set[i].buf == r->buf && set[i].lo < r->hi && r->lo < set[i].hi) return true;
    return false;
}

static int push_range(vk_range **set, int *n, int *cap, vk_range r) {
    if (*n == *cap) {
        int c = *cap ? 2 * *cap : 64;
        vk_range *p = loom_realloc(*set, (size_t)c * sizeof *p);
        if (!p) return -1;
        *set = p;
        *cap = c;
    }
    (*set)[(*n)++] = r;
    return 0;
}

static void barrier(vk_rec *r) {
    r->n_barrier++;
    r->n_rd = r->n_wr = 0;
    if (r->sizing) return;
    VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                          .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT,
                          .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT};
    vkCmdPipelineBarrier(r->cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1,
                         &mb, 0, NULL, 0, NULL);
}

/* ---- dispatch ------------------------------------------------------------------------------------ */

static VkDescriptorSet alloc_set(vk_rec *r) {
    vk_dev *d = r->d;
    VkDescriptorSetAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
                                      .descriptorSetCount = 1,
                                      .pSetLayouts = &d->dsl};
    VkDescriptorSet set = VK_NULL_HANDLE;
    if (r->n_pools) {
        ai.descriptorPool = r->pools[r->n_pools - 1];
        if (vkAllocateDescriptorSets(d->dev, &ai, &set) == VK_SUCCESS) return set;
    }
    /* the current pool is full (or there is none): add one */
    VkDescriptorPool *np = loom_realloc(r->pools, (size_t)(r->n_pools + 1) * sizeof *np);
    if (!np) return VK_NULL_HANDLE;
    r->pools = np;
    VkDescriptorPoolSize ps = {.type = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, .descriptorCount = 512 * VK_NBIND};
    VkDescriptorPoolCreateInfo pi = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
                                     .maxSets = 512,
                                     .poolSizeCount = 1,
                                     .pPoolSizes = &ps};
    VkResult res = vkCreateDescriptorPool(d->dev, &pi, NULL, &r->pools[r->n_pools]);
    if (res != VK_SUCCESS) {
        loom_err("vulkan: vkCreateDescriptorPool failed: %s", vk_result_str(res));
        return VK_NULL_HANDLE;
    }
    ai.descriptorPool = r->pools[r->n_pools++];
    res = vkAllocateDescriptorSets(d->dev, &ai, &set);
    if (res != VK_SUCCESS) loom_err("vulkan: vkAllocateDescriptorSets failed: %s", vk_result_str(res));
    return res == VK_SUCCESS ? set : VK_NULL_HANDLE;
}

typedef struct vk_pc {
    uint32_t off[VK_NBIND];
    uint32_t u[16];
    float f[6];
} vk_pc;
_Static_assert(sizeof(vk_pc) == VK_PC_WORDS * 4, "vk_pc is shaders/common.glsl's push-constant block");

/* Do two arguments (logical buffers and byte ranges) overlap? Are they the same range? */
static bool arg_overlaps(const vk_arg *a, const vk_arg *b) {
    return a->b && a->b == b->b && a->off < b->off + b->len && b->off < a->off + a->len;
}
static bool arg_same(const vk_arg *a, const vk_arg *b) { return a->b == b->b && a->off == b->off && a->len == b->len; }

static int dispatch(vk_rec *r, loom_spv_id shader, const uint32_t spec[4], const vk_arg args[VK_NBIND], vk_pc *pc,
                    uint32_t gx, uint32_t gy, uint32_t gz) {
    vk_dev *d = r->d;
    vk_bound bd[VK_NBIND];
    vk_range rr[VK_NBIND];
    for (int i = 0; i < VK_NBIND; i++) {
        if (resolve(d, &args[i], &bd[i]) < 0) return -1;
        pc->off[i] = bd[i].elem;
        rr[i] = (vk_range){bd[i].buf, bd[i].off, bd[i].off + bd[i].range};
    }
    if (gx == 0 || gy == 0 || gz == 0) return 0;
    for (int i = 0; i < VK_NBIND && r->qx.valid; i++) /* a write over a cached quantised x's sources */
        if (args[i].write && args[i].b && (arg_overlaps(&args[i], &r->qx.x) || arg_overlaps(&args[i], &r->qx.e)))
            r->qx.valid = false;
    bool hazard = false;
    for (int i = 0; i < VK_NBIND && !hazard; i++) {
        if (!args[i].b) continue;
        if (overlaps(r->wr, r->n_wr, &rr[i])) hazard = true;
        if (args[i].write && overlaps(r->rd, r->n_rd, &rr[i])) hazard = true;
    }
    if (hazard) barrier(r);
    if (d->trace_rec && !r->sizing) /* LOOM_VK_VERBOSE=2: the recorded stream, a line per dispatch */
        fprintf(stderr, "vk-rec node %d%s: %s grid %u x %u x %u spec %u %u %u %#x\n", r->cur_node,
                hazard ? " (after a barrier)" : "", loom_spirv_table[shader].name, gx, gy, gz, spec ? spec[0] : 0,
                spec ? spec[1] : 0, spec ? spec[2] : 0, spec ? spec[3] : 0);
    for (int i = 0; i < VK_NBIND; i++) {
        if (!args[i].b) continue;
        if (args[i].write ? push_range(&r->wr, &r->n_wr, &r->cap_wr, rr[i])
                          : push_range(&r->rd, &r->n_rd, &r->cap_rd, rr[i]))
            return -1;
    }
    int k = r->n_dispatch++;
    if (r->sizing) return 0;

    VkPipeline pipe = vk_pipeline_get(d, shader, spec);
    if (!pipe) return -1;
    VkDescriptorSet set = alloc_set(r);
    if (!set) return -1;
    VkDescriptorBufferInfo bi[VK_NBIND];
    VkWriteDescriptorSet w[VK_NBIND];
    for (int i = 0; i < VK_NBIND; i++) {
        bi[i] = (VkDescriptorBufferInfo){.buffer = bd[i].buf, .offset = bd[i].off, .range = bd[i].range};
        w[i] = (VkWriteDescriptorSet){.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
                                      .dstSet = set,
                                      .dstBinding = (uint32_t)i,
                                      .descriptorCount = 1,
                                      .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                      .pBufferInfo = &bi[i]};
    }
    vkUpdateDescriptorSets(d->dev, VK_NBIND, w, 0, NULL);
    vkCmdBindPipeline(r->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, pipe);
    vkCmdBindDescriptorSets(r->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, d->layout, 0, 1, &set, 0, NULL);
    vkCmdPushConstants(r->cmd, d->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof *pc, pc);
    vkCmdDispatch(r->cmd, gx, gy, gz);
    if (r->qp) {
        vkCmdWriteTimestamp(r->cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, r->qp, (uint32_t)k + 1);
        r->q_node[k] = r->cur_node;
    }
    return 0;
}

/* A 1-D grid of n invocations in workgroups of 256, folded into (x, y) for large n. */
static void grid1(uint64_t n, uint32_t *gx, uint32_t *gy) {
    uint64_t g = (n + 255) / 256;
    *gx = g < 32768 ? (uint32_t)g : 32768;
    *gy = *gx ? (uint32_t)((g + *gx - 1) / *gx) : 0;
}

static void grid_rows(uint64_t rows, uint32_t *gx, uint32_t *gy) {
    *gx = rows < 32768 ? (uint32_t)rows : 32768;
    *gy = *gx ? (uint32_t)((rows + *gx - 1) / *gx) : 0;
}

/* ---- ops ------------------------------------------------------------------------------------------ */

static const loom_node *N(const loom_exec_ctx *x, int i) { return &x->plan->g->nodes[i]; }

/* The argument for node i's tensor (its whole extent). */
static int arg_of(const loom_exec_ctx *x, int i, bool write, vk_arg *a) {
    size_t off = 0;
    loom_buffer *b = loom_exec_node_buffer(x, i, &off);
    const loom_node *n = N(x, i);
    if (!b) return loom_err("vulkan: node %d (%s '%s') has no buffer", i, loom_op_name(n->op), n->name);
    /* quantised blocks are bound as bytes: the shaders address them byte-wise (wquant.glsl) */
    size_t es = loom_dtype_is_quant(n->type) ? 1 : loom_dtype_size(n->type);
    *a = (vk_arg){.b = b, .off = off, .len = loom_node_bytes(n), .esize = es, .write = write};
    return 0;
}

static loom_spv_id wshader(vk_dev *d, loom_dtype t, loom_spv_id f32, loom_spv_id f16, loom_spv_id f16s,
                           loom_spv_id bf16) {
    switch (t) {
    case LOOM_F16: return d->f16_storage ? f16s : f16;
    case LOOM_BF16: return bf16;
    default: return f32;
    }
}

/* Shader for a block-quantised weight: kind 0 embed, 1 matvec, 2 matmul, 3 matmul (big tiles), 4 / 5
 * tensor-core tiles dequantising in the tile loads (Q8_0, Q4_0, Q4_K, Q6_K only: qcm_tiles_ok). */
static loom_spv_id qshader(loom_dtype t, int kind) {
#ifdef LOOM_VK_COOPMAT
    static const loom_spv_id cmtab[4][2] = {{LOOM_SPV_MATMUL_CM_Q8_0, LOOM_SPV_MATMUL_CM_BIG_Q8_0},
                                            {LOOM_SPV_MATMUL_CM_Q4_0, LOOM_SPV_MATMUL_CM_BIG_Q4_0},
                                            {LOOM_SPV_MATMUL_CM_Q4_K, LOOM_SPV_MATMUL_CM_BIG_Q4_K},
                                            {LOOM_SPV_MATMUL_CM_Q6_K, LOOM_SPV_MATMUL_CM_BIG_Q6_K}};
    if (kind >= 4) return cmtab[t == LOOM_Q8_0 ? 0 : t == LOOM_Q4_0 ? 1 : t == LOOM_Q4_K ? 2 : 3][kind - 4];
#endif
#define QROW(T) {LOOM_SPV_EMBED_##T, LOOM_SPV_MATVEC_##T, LOOM_SPV_MATMUL_##T, LOOM_SPV_MATMUL_BIG_##T}
    static const loom_spv_id tab[LOOM_DTYPE_COUNT][4] = {
        [LOOM_Q8_0] = QROW(Q8_0),     [LOOM_Q4_0] = QROW(Q4_0),     [LOOM_Q4_K] = QROW(Q4_K),
        [LOOM_Q6_K] = QROW(Q6_K),     [LOOM_Q4_1] = QROW(Q4_1),     [LOOM_Q5_0] = QROW(Q5_0),
        [LOOM_Q5_1] = QROW(Q5_1),     [LOOM_Q2_K] = QROW(Q2_K),     [LOOM_Q3_K] = QROW(Q3_K),
        [LOOM_Q5_K] = QROW(Q5_K),     [LOOM_IQ4_NL] = QROW(IQ4_NL), [LOOM_IQ4_XS] = QROW(IQ4_XS)};
#undef QROW
    return tab[t][kind];
}

/* The block-at-a-time decode GEMV (shaders/matvec_qb.comp, LOOM_VK_GEMV_Q) for t. */
static loom_spv_id qbshader(loom_dtype t) {
#define QB(T) [LOOM_##T] = LOOM_SPV_MATVEC_QB_##T
    static const loom_spv_id tab[LOOM_DTYPE_COUNT] = {QB(Q8_0), QB(Q4_0), QB(Q4_K), QB(Q6_K),   QB(Q4_1),   QB(Q5_0),
                                                      QB(Q5_1), QB(Q2_K), QB(Q3_K), QB(Q5_K), QB(IQ4_NL), QB(IQ4_XS)};
#undef QB
    return tab[t];
}

/* LOOM_VK_CM_QTILE=1 without cooperative matrices: matmul_q.comp with QTILE (64 x 64 or, big,
 * 128 x 128 tiles), the same decoders (qtile.glsl) as the tensor-core variants' in-tile builds
 * (vk_cmv.qt below), so lavapipe checks them against the CPU. */
static loom_spv_id qtile_shader(loom_dtype t, bool big) {
#define QT(T) {LOOM_SPV_MATMUL_QT_##T, LOOM_SPV_MATMUL_BIG_QT_##T}
    static const loom_spv_id tab[LOOM_DTYPE_COUNT][2] = {
        [LOOM_Q8_0] = QT(Q8_0), [LOOM_Q4_0] = QT(Q4_0), [LOOM_Q4_K] = QT(Q4_K),     [LOOM_Q6_K] = QT(Q6_K),
        [LOOM_Q4_1] = QT(Q4_1), [LOOM_Q5_0] = QT(Q5_0), [LOOM_Q5_1] = QT(Q5_1),     [LOOM_Q2_K] = QT(Q2_K),
        [LOOM_Q3_K] = QT(Q3_K), [LOOM_Q5_K] = QT(Q5_K), [LOOM_IQ4_NL] = QT(IQ4_NL), [LOOM_IQ4_XS] = QT(IQ4_XS)};
#undef QT
    return tab[t][big];
}

/* The decode GEMV on x quantised to 8 bits (shaders/matvec_dp.comp, LOOM_VK_GEMV_Q=dp*) for t: with
 * integer dot products (idot) or without; with the epilogue that writes y quantised (epi, DP_EPI) or
 * without. */
static loom_spv_id dpshader(loom_dtype t, bool idot, int epi) {
#define DP(T)                                                                                                  \
    [LOOM_##T] = {{LOOM_SPV_MATVEC_DP_##T, LOOM_SPV_MATVEC_DPI_##T},                                           \
                  {LOOM_SPV_MATVEC_DPE_##T, LOOM_SPV_MATVEC_DPIE_##T},                                         \
                  {LOOM_SPV_MATVEC_DPGU_##T, LOOM_SPV_MATVEC_DPIGU_##T}}
    static const loom_spv_id tab[LOOM_DTYPE_COUNT][3][2] = {DP(Q8_0), DP(Q4_0), DP(Q4_K),   DP(Q6_K),
                                                            DP(Q4_1), DP(Q5_0), DP(Q5_1),   DP(Q2_K),
                                                            DP(Q3_K), DP(Q5_K), DP(IQ4_NL), DP(IQ4_XS)};
#undef DP
    return tab[t][epi][idot]; /* epi: 0 none, 1 DP_EPI, 2 DP_EPI + DP_GU */
}

/* Whether the in-tile tensor-core variants (LOOM_VK_QCM=tiles) exist for t; the others always take
 * the f16 copy. */
static bool qcm_tiles_ok(loom_dtype t) { return t == LOOM_Q8_0 || t == LOOM_Q4_0 || t == LOOM_Q4_K || t == LOOM_Q6_K; }

/* The tensor-core prefill variants for A/B runs (LOOM_VK_CM_VARIANT=<name>; docs/vulkan-backend.md).
 * 0, "base", is matmul_cm.comp with its 64 x 64 / 128 x 128 choice (LOOM_VK_CM_BIG_TILES); the
 * others are shaders/matmul_cmv.comp built with the defines vulkan.cmake lists for them: a bm x bn
 * tile for every coopmat dispatch, nsg subgroups, a K step of bk, stages shared buffers, and (xh)
 * x converted to f16 once per matmul by tohalf.comp. They take f16/bf16 W, and a quantised W
 * either dequantised in their tile loads (LOOM_VK_CM_QTILE, the default: the block types of qmask,
 * shaders qt) or as its f16 copy (the other types); LOOM_VK_QCM=tiles stays on matmul_cm.comp.
 * smem: their shared memory, bytes. */
typedef struct {
    const char *name;
    uint32_t bm, bn, nsg, smem;
    bool xh;
    loom_spv_id f16, bf16;
    uint32_t qmask;           /* 1 << t for the block types t with an in-tile build */
    const loom_spv_id *qt;    /* [LOOM_DTYPE_COUNT]: those builds (matmul_cmv.comp with W_Q*) */
} vk_cmv;
#ifdef LOOM_VK_COOPMAT
#define QB(T) (1u << LOOM_##T)
#define QMASK4 (QB(Q8_0) | QB(Q4_0) | QB(Q4_K) | QB(Q6_K))
#define QMASK12 (QMASK4 | QB(Q4_1) | QB(Q5_0) | QB(Q5_1) | QB(Q2_K) | QB(Q3_K) | QB(Q5_K) | QB(IQ4_NL) | QB(IQ4_XS))
#define QS(N, T) [LOOM_##T] = LOOM_SPV_MATMUL_CMV_##N##Q_##T
#define QTAB4(N) (const loom_spv_id[LOOM_DTYPE_COUNT]){QS(N, Q8_0), QS(N, Q4_0), QS(N, Q4_K), QS(N, Q6_K)}
static const loom_spv_id cmv_q_sg64[LOOM_DTYPE_COUNT] = {
    QS(SG64, Q8_0), QS(SG64, Q4_0), QS(SG64, Q4_K), QS(SG64, Q6_K),   QS(SG64, Q4_1),   QS(SG64, Q5_0),
    QS(SG64, Q5_1), QS(SG64, Q2_K), QS(SG64, Q3_K), QS(SG64, Q5_K), QS(SG64, IQ4_NL), QS(SG64, IQ4_XS)};
#endif
static const vk_cmv cm_variants[] = {
    {"base", 0, 0, 0, 0, false, 0, 0, 0, NULL},
#ifdef LOOM_VK_COOPMAT
    /* smem: stages buffers of (bm + bn) rows of bk + 8 halves, and 1 KiB per subgroup for the stores */
#define CMV(n, N, bm, bn, bk, nsg, stages, xh, qm, qt)                                             \
    {n, bm, bn, nsg, (stages) * ((bm) + (bn)) * ((bk) + 8) * 2 + (nsg) * 1024, xh, LOOM_SPV_MATMUL_CMV_##N##_F16, \
     LOOM_SPV_MATMUL_CMV_##N##_BF16, qm, qt}
    CMV("sg64", SG64, 128, 128, 32, 4, 1, false, QMASK12, cmv_q_sg64), /* 4 subgroups of 64 x 64 (4 x 4 fragments) */
    CMV("sg64db", SG64DB, 128, 128, 32, 4, 2, false, 0, NULL), /* ... + two shared buffers, one barrier a step */
    CMV("sg64h", SG64H, 128, 128, 32, 4, 2, true, 0, NULL),  /* ... + x converted to f16 first */
    CMV("n256h", N256H, 128, 256, 32, 8, 1, true, 0, NULL),  /* 128 x 256, 8 subgroups of 64 x 64, f16 x */
    CMV("m64h", M64H, 64, 128, 32, 4, 2, true, 0, NULL),     /* 64 x 128, 4 subgroups of 32 x 64, 2 buffers, f16 x */
    /* session 11's set (unmeasured when written): the K step of 64 (half the barriers per product)
     * and/or 8 subgroups of 64 x 32 on sg64's 128 x 128 tile (twice the warps, 8 accumulators each) */
    CMV("k64h", K64H, 128, 128, 64, 4, 1, true, QMASK4, QTAB4(K64H)),  /* sg64 with BK = 64, f16 x */
    CMV("w8", W8, 128, 128, 32, 8, 1, false, QMASK4, QTAB4(W8)),       /* 8 subgroups of 64 x 32 */
    CMV("w8k64", W8K64, 128, 128, 64, 8, 1, false, QMASK4, QTAB4(W8K64)), /* ... with BK = 64 */
    CMV("w8k64h", W8K64H, 128, 128, 64, 8, 1, true, QMASK4, QTAB4(W8K64H)), /* ... and f16 x */
    CMV("w8db", W8DB, 128, 128, 32, 8, 2, false, QMASK4, QTAB4(W8DB)), /* w8, two buffers, one barrier a step */
    CMV("m256", M256, 256, 128, 32, 8, 1, false, QMASK4, QTAB4(M256)), /* 256 x 128, 8 subgroups of 64 x 64 */
#undef CMV
#endif
};
#ifdef LOOM_VK_COOPMAT
#undef QTAB4
#undef QS
#undef QMASK12
#undef QMASK4
#undef QB
#endif
#define N_CMV (sizeof cm_variants / sizeof cm_variants[0])

int vk_cm_variant_find(const vk_dev *d, const char *name) {
    int i = VK_KNOB_FIND(cm_variants, N_CMV, name);
    if (i < 0) {
        char names[256] = "";
        return loom_err("vulkan: LOOM_VK_CM_VARIANT=%s is not one of this build's: %s", name,
                        VK_KNOB_NAMES(names, cm_variants, N_CMV));
    }
    if (d->coopmat && cm_variants[i].smem > d->props.limits.maxComputeSharedMemorySize)
        return loom_err("vulkan: LOOM_VK_CM_VARIANT=%s needs %u bytes of shared memory, %s has %u", name,
                        cm_variants[i].smem, d->name, d->props.limits.maxComputeSharedMemorySize);
    return i;
}

const char *vk_cm_variant_name(uint32_t i) { return i < N_CMV ? cm_variants[i].name : "?"; }

/* sg64 by default: on the H200 (2026-12-05, docs/benchmarks.md) llama-7b f16 pp512 5,356 -> 7,281 t/s,
 * pp4096 4,688 -> 5,060, llama-1.1b f16 pp512 27,947 -> 28,033, pp4096 18,034 -> 18,758; the
 * double-buffered and f16-x variants were slower there (sg64db, sg64h, m64h) or mixed (n256h) */
uint32_t vk_cm_variant_default(const vk_dev *d) {
    for (size_t i = 1; i < N_CMV; i++)
        if (!strcmp(cm_variants[i].name, "sg64") && cm_variants[i].smem <= d->props.limits.maxComputeSharedMemorySize)
            return (uint32_t)i;
    return 0;
}

/* Rows per invocation of the block-at-a-time decode GEMV (matvec_qb.comp) when LOOM_VK_GEMV_Q is
 * unset, 0 for matvec.comp: what measured faster on the H200 (2026-12-05, tg128, docs/benchmarks.md).
 * The 32-weight block types take 4 rows at every size (llama-1.1b: Q4_0 1.03x, Q4_1 1.11x, Q5_0
 * 1.07x, Q5_1 1.17x, IQ4_NL/IQ4_XS 2.4x; llama-7b Q4_0 1.14x); Q4_K and Q6_K only on matrices of 16M
 * weights or more (llama-7b Q4_K_M 97.7 -> 113.9 t/s; on llama-1.1b's matrices, 11.5M weights at
 * most, 4 rows lost 6-18%); Q8_0, Q2_K, Q3_K and Q5_K keep matvec.comp (4 rows lost 9-20% at
 * llama-1.1b; unmeasured at 7B). */
/* The block types the GPU defaults take (LOOM_VK_GEMV_Q / LOOM_VK_CM_QTILE unset; docs/benchmarks.md):
 * every block type takes the 8-bit-x decode GEMV with one row per invocation (vk_device.c has the
 * figures); in-tile dequantisation lost 38% on IQ4 (a table lookup per weight), which keeps its f16 copy. */
static bool qtile_default_type(loom_dtype t) { return t != LOOM_IQ4_NL && t != LOOM_IQ4_XS; }

static uint32_t qb_rows_default(loom_dtype t, uint64_t rows, uint64_t k) {
    switch (t) {
    case LOOM_Q4_0:
    case LOOM_Q4_1:
    case LOOM_Q5_0:
    case LOOM_Q5_1:
    case LOOM_IQ4_NL:
    case LOOM_IQ4_XS: return 4;
    case LOOM_Q4_K:
    case LOOM_Q6_K: return rows * k >= ((uint64_t)16 << 20) ? 4 : 0;
    default: return 0;
    }
}

/* Rows of a weight that one dispatch may bind: the binding range and the overlap between pieces
 * of a split buffer both bound it. */
static uint64_t rows_per_chunk(vk_dev *d, size_t row_bytes) {
    size_t lim = d->max_range - d->align;
    if (lim > d->overlap) lim = d->overlap;
    uint64_t r = lim / row_bytes;
    return r ? r : 1;
}

static int rec_embed(vk_rec *r, const loom_exec_ctx *x, int i) {
    const loom_node *n = N(x, i), *t = N(x, n->src[0]);
    vk_arg a[VK_NBIND] = {0}, tab;
    if (arg_of(x, i, true, &a[0]) < 0 || arg_of(x, n->src[0], false, &tab) < 0 ||
        arg_of(x, n->src[1], false, &a[2]) < 0)
        return -1;
    uint64_t V = (uint64_t)t->ne[0], D = (uint64_t)t->ne[1], S = (uint64_t)loom_node_nelem(N(x, n->src[1]));
    size_t rb = loom_dtype_nbytes(t->type, (int64_t)D);
    uint64_t step = rows_per_chunk(r->d, rb);
    loom_spv_id sh = loom_dtype_is_quant(t->type)
                         ? qshader(t->type, 0)
                         : wshader(r->d, t->type, LOOM_SPV_EMBED_F32, LOOM_SPV_EMBED_F16, LOOM_SPV_EMBED_F16S,
                                   LOOM_SPV_EMBED_BF16);
    for (uint64_t v0 = 0; v0 < V; v0 += step) {
        uint64_t v1 = v0 + step < V ? v0 + step : V;
        a[1] = tab;
        a[1].off = tab.off + (size_t)v0 * rb;
        a[1].len = (size_t)(v1 - v0) * rb;
        vk_pc pc = {.u = {(uint32_t)S, (uint32_t)D, (uint32_t)v0, (uint32_t)v1, (uint32_t)V}};
        uint32_t gx, gy;
        grid1(S * D, &gx, &gy);
        if (dispatch(r, sh, NULL, a, &pc, gx, gy, 1) < 0) return -1;
    }
    return 0;
}

static bool gemv_path(vk_dev *d, const loom_exec_ctx *x, int i) { return vk_gemv_path(d, x->plan->g, i); }

/* Was node i folded into its readers by the planner pass (vk_fuse.c)? */
static bool folded(const loom_exec_ctx *x, int i) { return i >= 0 && (N(x, i)->flags & LOOM_NODE_FOLDED); }

/* Scratch space (attention partials, split-K products): sized in the first pass, allocated once
 * per plan; in the sizing pass the binding is a placeholder. */
static vk_arg scratch_at(vk_rec *r, size_t off, size_t len, bool write) {
    if (off + len > r->scratch_need) r->scratch_need = off + len;
    if (!r->scratch) return (vk_arg){0};
    return (vk_arg){.b = r->scratch, .off = off, .len = len, .esize = 4, .write = write};
}

/* [off, off + len) of the quantised-x buffer (uvec4 elements); a placeholder while sizing */
static vk_arg qbuf_at(vk_rec *r, size_t off, size_t len, bool write) {
    if (!r->qbuf) return (vk_arg){0};
    return (vk_arg){.b = r->qbuf, .off = off, .len = len, .esize = 16, .write = write};
}
/* The region stride for qdata bytes of x and qcnt counters */
static size_t qreg_of(size_t qdata, size_t qcnt) { return qdata + (4 * qcnt + 255) / 256 * 256; }

/* The layout of M rows of K quantised: int8 q words, then the headers at *hoff; the region's bytes */
static size_t qx_layout(uint64_t M, uint64_t K, size_t *hoff) {
    *hoff = ((size_t)(M * K) + 255) / 256 * 256;
    return *hoff + (size_t)(M * K / 32) * 16;
}

/* The region a new quantised x goes to: not the one the cached x is in (a dp GEMV that writes the
 * next x in its epilogue reads that one) */
static int qx_next_region(const vk_rec *r) { return r->qx.valid ? r->qx.region ^ 1 : 0; }

static void qx_set(vk_rec *r, const vk_arg *x, const vk_arg *e, int xmode, bool normw, uint64_t M, uint64_t K,
                   int region) {
    r->qx.valid = true;
    r->qx.x = *x;
    r->qx.e = *e;
    r->qx.x.write = r->qx.e.write = false;
    r->qx.xmode = xmode;
    r->qx.normw = normw;
    r->qx.M = M;
    r->qx.K = K;
    r->qx.region = region;
}

static vk_arg scratch_arg(vk_rec *r, size_t need, bool write) { return scratch_at(r, 0, need, write); }

static loom_spv_id dqshader(loom_dtype t) {
#ifdef LOOM_VK_COOPMAT
    static const loom_spv_id tab[LOOM_DTYPE_COUNT] = {
        [LOOM_Q8_0] = LOOM_SPV_DEQUANT_Q8_0,     [LOOM_Q4_0] = LOOM_SPV_DEQUANT_Q4_0,
        [LOOM_Q4_K] = LOOM_SPV_DEQUANT_Q4_K,     [LOOM_Q6_K] = LOOM_SPV_DEQUANT_Q6_K,
        [LOOM_Q4_1] = LOOM_SPV_DEQUANT_Q4_1,     [LOOM_Q5_0] = LOOM_SPV_DEQUANT_Q5_0,
        [LOOM_Q5_1] = LOOM_SPV_DEQUANT_Q5_1,     [LOOM_Q2_K] = LOOM_SPV_DEQUANT_Q2_K,
        [LOOM_Q3_K] = LOOM_SPV_DEQUANT_Q3_K,     [LOOM_Q5_K] = LOOM_SPV_DEQUANT_Q5_K,
        [LOOM_IQ4_NL] = LOOM_SPV_DEQUANT_IQ4_NL, [LOOM_IQ4_XS] = LOOM_SPV_DEQUANT_IQ4_XS};
    return tab[t];
#else
    (void)t;
    return LOOM_SPV_EMBED_F32; /* unreachable: no coopmat, no f16 copies */
#endif
}

/* The K splits of a tiled matmul with `tiles` output tiles (every split's partial product lands in
 * scratch, a second dispatch sums them): few tiles and a long K (a 896-wide down projection in
 * prefill, a 7B pp512's 4096-row matrices on 128 x 128 tiles) split K as well, up to 8 ways, each
 * split >= 512 long; LOOM_VK_CM_KSPLIT=n (1..8) forces n on every tiled matmul, for A/B runs, but
 * one whose bias may not be bound whole (`whole` false: a weight in chunks of rows, so its bias
 * may cross the pieces of a split buffer), as the sum would bind it: there the choice stays. */
static uint32_t ksplit_of(const vk_dev *d, uint64_t tiles, uint64_t K, bool whole) {
    if (d->ksplit && whole) return d->ksplit;
    if (tiles >= 256 || K < 1024) return 1;
    uint64_t ks = (256 + tiles - 1) / tiles;
    if (ks > K / 512) ks = K / 512;
    if (ks > 8) ks = 8;
    return ks > 1 ? (uint32_t)ks : 1;
}

#ifdef LOOM_VK_COOPMAT
/* x (nx f32 elements) to f16 once per matmul (tohalf.comp) for the tensor-core matmuls that read f16
 * x (matmul_cm2.comp, the matmul_cmv.comp XH variants): into scratch at `at`, its length nx rounded
 * up to `round` elements; *x becomes that copy. */
static int rec_tohalf(vk_rec *r, vk_arg *x, size_t at, uint64_t nx, uint64_t round) {
    size_t xb = (size_t)((nx + round - 1) / round * round) * 2;
    vk_arg q[VK_NBIND] = {0};
    q[0] = scratch_at(r, at, xb, true);
    q[1] = *x;
    vk_pc qp = {.u = {(uint32_t)nx}};
    uint32_t gx, gy;
    grid1((nx + 3) / 4, &gx, &gy);
    if (dispatch(r, LOOM_SPV_TOHALF, NULL, q, &qp, gx, gy, 1) < 0) return -1;
    *x = scratch_at(r, at, xb, false);
    x->esize = 2;
    return 0;
}
#endif

#ifdef LOOM_VK_CM2
/* LOOM_VK_CM2: the prefill matmul on VK_NV_cooperative_matrix2 (shaders/matmul_cm2.comp, tile from
 * vk_cm2.c): x to f16 once (tohalf.comp, in scratch after any split-K partials; not for the x32
 * variants, which read f32 x), then a dispatch per chunk of W rows reading W as stored (quantised
 * blocks decoded in the tile loads: no f16 copy).
 * Returns 1 when recorded, 0 when not taken (no shader for the weight type, a base the tensor loads
 * cannot take: they want x, W and y 16-byte aligned, or too many rows), -1 on error. */
static int rec_matmul_cm2(vk_rec *r, const loom_node *w, vk_arg a[VK_NBIND], const vk_arg *wa, const vk_arg *ba,
                          bool bias, uint64_t M, uint64_t Nn, uint64_t K) {
    vk_dev *d = r->d;
    uint32_t bm, bn;
    bool x32;
    loom_spv_id sh;
    if (!vk_cm2_pick(d, w->type, &bm, &bn, &x32, &sh) || (M + bm - 1) / bm > 65535) return 0;
    if (x32 && (size_t)elem_off(d, &a[1]) * 4 % 16) return 0; /* f32 x read as it is: its base too */
    size_t rb = loom_dtype_nbytes(w->type, (int64_t)K);
    uint64_t step = rows_per_chunk(d, rb);
    for (uint64_t n0 = 0; n0 < Nn; n0 += step) {
        vk_arg c = *wa;
        c.off = wa->off + (size_t)n0 * rb;
        c.len = (size_t)((n0 + step < Nn ? step : Nn - n0) * rb);
        if ((size_t)elem_off(d, &c) * c.esize % 16) return 0;
    }
    uint64_t tiles = ((M + bm - 1) / bm) * ((Nn + bn - 1) / bn);
    uint32_t ksplit = ksplit_of(d, tiles, K, !bias || step >= Nn); /* as rec_matmul */
    if (ksplit == 1 && (size_t)elem_off(d, &a[0]) * 4 % 16) return 0;
    size_t al = d->align > 256 ? d->align : 256, part = (size_t)M * Nn * 4;
    size_t xh_at = ksplit > 1 ? (part * ksplit + al - 1) / al * al : 0;
    vk_arg out = a[0];
    if (ksplit > 1) a[0] = scratch_arg(r, part * ksplit, true);
    uint32_t gx, gy;
    if (!x32 && rec_tohalf(r, &a[1], xh_at, M * K, 8) < 0) return -1; /* x to f16 once */
    for (uint64_t n0 = 0; n0 < Nn; n0 += step) {
        uint64_t cnt = n0 + step < Nn ? step : Nn - n0;
        a[2] = *wa;
        a[2].off = wa->off + (size_t)n0 * rb;
        a[2].len = (size_t)cnt * rb;
        if (bias) {
            a[3] = *ba;
            a[3].off = ba->off + (size_t)n0 * 4;
            a[3].len = (size_t)cnt * 4;
        }
        vk_pc pc = {.u = {(uint32_t)M, (uint32_t)cnt, (uint32_t)K, bias && ksplit == 1, (uint32_t)n0, (uint32_t)Nn, 0,
                          ksplit, (uint32_t)(M * Nn)}};
        if (dispatch(r, sh, NULL, a, &pc, (uint32_t)((cnt + bn - 1) / bn), (uint32_t)((M + bm - 1) / bm), ksplit) < 0)
            return -1;
    }
    if (ksplit > 1) { /* y = sum of the partial products (+ bias), as rec_matmul */
        vk_arg s[VK_NBIND] = {0};
        s[0] = out;
        s[1] = a[0];
        s[1].write = false;
        if (bias) s[2] = *ba;
        vk_pc pc = {.u = {5, (uint32_t)(M * Nn), (uint32_t)Nn, ksplit, bias}};
        grid1(M * Nn, &gx, &gy);
        if (dispatch(r, LOOM_SPV_ELTWISE, NULL, s, &pc, gx, gy, 1) < 0) return -1;
    }
    return 1;
}
#endif

/* The block-quantised decode GEMV of MATMUL i: rows per invocation (0: matvec.comp or not a GEMV)
 * and (*dp) whether on 8-bit x (matvec_dp.comp): per type and size by default (qb_rows_default; on a
 * GPU with integer dot products every block type takes the 8-bit-x GEMV, 1 row, vk_device.c),
 * or as LOOM_VK_GEMV_Q forces. rec_matmul and the quantisation epilogues (qx_reader) agree on it. */
static uint32_t gemv_q_rows(vk_dev *d, const loom_exec_ctx *x, int i, bool *dp) {
    const loom_node *w = N(x, N(x, i)->src[1]);
    uint64_t K = (uint64_t)w->ne[1];
    bool dp_def = d->gemv_dp_default;
    uint32_t qb_rows = !gemv_path(d, x, i) || !loom_dtype_is_quant(w->type) || K % 32 != 0 ? 0
                       : d->gemv_q != VK_GEMV_Q_AUTO                                     ? d->gemv_q
                       : dp_def                                                          ? 1
                                                                                         : qb_rows_default(w->type, (uint64_t)w->ne[0], K);
    *dp = qb_rows && (d->gemv_dp || (d->gemv_q == VK_GEMV_Q_AUTO && dp_def));
    return qb_rows;
}

/* LOOM_VK_QX_FOLD: the first dp GEMV after the one being recorded (plan order) that reads node o's
 * output as its x, directly (xmode 0) or through a folded RMSNORM (1: *normw, its weight in *e), with
 * K = kx; returns its xmode, or -1 when there is none (nothing to write quantised). */
static int qx_reader(vk_rec *r, const loom_exec_ctx *x, int o, uint64_t kx, bool *normw, vk_arg *e) {
    const loom_plan *p = x->plan;
    *normw = false;
    *e = (vk_arg){0};
    if (!r->qx_fold || r->k < 0 || !p) return -1;
    for (int k = r->k + 1; k < p->n_order; k++) {
        int j = p->order[k];
        const loom_node *n = N(x, j);
        if (n->op == LOOM_OP_ADD) /* a GEMV folded into its residual ADD */
            j = folded(x, n->src[0]) ? n->src[0] : folded(x, n->src[1]) ? n->src[1] : -1;
        else if (n->op != LOOM_OP_MATMUL)
            continue;
        if (j < 0 || N(x, j)->op != LOOM_OP_MATMUL || (uint64_t)N(x, N(x, j)->src[1])->ne[1] != kx) continue;
        bool dp;
        int s = N(x, j)->src[0];
        if (!gemv_q_rows(r->d, x, j, &dp) || !dp) continue;
        if (s == o) return 0;
        const loom_node *rn = N(x, s);
        /* (the final norm reads the last row through a VIEW: of a one-row output, all of it) */
        int rs = rn->op == LOOM_OP_RMSNORM ? rn->src[0] : -1;
        if (rs >= 0 && rs != o && N(x, rs)->op == LOOM_OP_VIEW && N(x, rs)->src[0] == o &&
            N(x, rs)->view_offset == 0 && loom_node_nelem(N(x, rs)) == loom_node_nelem(N(x, o)))
            rs = o;
        if (folded(x, s) && rn->op == LOOM_OP_RMSNORM && rs == o) {
            *normw = rn->n_src > 1 && rn->src[1] >= 0;
            if (*normw && arg_of(x, rn->src[1], false, e) < 0) return -1;
            return 1;
        }
    }
    return -1;
}

/* LOOM_VK_QX_FOLD, gate and up: when dp GEMV i (gate) is followed in the plan order by a GEMV of
 * the same x, weight type and shape, without bias (up), and a folded SWIGLU(gate, up) is the x of a
 * later dp GEMV (down), one dispatch computes both (matvec_dp.comp DP_GU) and writes silu(gate) * up
 * quantised for down; returns up's node, or -1. */
static int gu_partner(vk_rec *r, const loom_exec_ctx *x, int i, uint32_t rows) {
    const loom_plan *p = x->plan;
    if (!r->qx_fold || r->k < 0 || !p || r->k + 1 >= p->n_order) return -1;
    int j = p->order[r->k + 1];
    const loom_node *g = N(x, i), *u = N(x, j);
    if (u->op != LOOM_OP_MATMUL || u->src[0] != g->src[0] || u->src[1] == g->src[1]) return -1;
    if ((g->n_src > 2 && g->src[2] >= 0) || (u->n_src > 2 && u->src[2] >= 0)) return -1;
    const loom_node *wg = N(x, g->src[1]), *wu = N(x, u->src[1]);
    bool dp;
    if (wg->type != wu->type || wg->ne[0] != wu->ne[0] || wg->ne[1] != wu->ne[1] || gemv_q_rows(r->d, x, j, &dp) != rows ||
        !dp)
        return -1;
    for (int k = r->k + 2; k < p->n_order; k++) { /* the down GEMV, through the folded SWIGLU */
        int m = p->order[k];
        const loom_node *n = N(x, m);
        if (n->op == LOOM_OP_ADD) m = folded(x, n->src[0]) ? n->src[0] : folded(x, n->src[1]) ? n->src[1] : -1;
        else if (n->op != LOOM_OP_MATMUL) continue;
        if (m < 0 || N(x, m)->op != LOOM_OP_MATMUL) continue;
        int s = N(x, m)->src[0];
        const loom_node *sn = N(x, s);
        if (!folded(x, s) || sn->op != LOOM_OP_SWIGLU || sn->src[0] != i || sn->src[1] != j) continue;
        return gemv_q_rows(r->d, x, m, &dp) && dp ? j : -1;
    }
    return -1;
}

/* MATMUL i, or (add >= 0) ADD `add` whose other source is the residual and whose folded source is
 * GEMV i: the GEMV writes the ADD's storage, adding the residual. x is computed on the fly when
 * src0 is a folded RMSNORM (xmode 1) or SWIGLU (xmode 2). */
/* matvec.comp's spec constants (workgroup size, M, rows per workgroup, xmode | loads << 2): a row per
 * subgroup, fewer rows a workgroup while `rows` rows in each of `grids` z slices (the MoE slots) would
 * take fewer than LOOM_VK_GEMV_WGS workgroups; LOOM_VK_GEMV_LOADS 8-element loads in flight (2). */
static void matvec_spec(const vk_dev *d, uint64_t rows, uint64_t grids, uint32_t M, uint32_t xmode, uint32_t spec[4]) {
    uint32_t sg = d->subgroup_size ? d->subgroup_size : 32, wg = sg > 128 ? sg : 128, nrows = wg / sg;
    while (nrows > 1 && (rows + nrows - 1) / nrows * grids < d->gemv_wgs) nrows /= 2;
    uint32_t loads = d->gemv_loads ? d->gemv_loads : 2;
    spec[0] = wg, spec[1] = M, spec[2] = nrows, spec[3] = xmode | loads << 2;
}

static int rec_matmul(vk_rec *r, const loom_exec_ctx *x, int i, int add) {
    vk_dev *d = r->d;
    if (r->gu_skip == i + 1) { /* computed by the gate GEMV's dispatch (DP_GU) */
        r->gu_skip = 0;
        return 0;
    }
    const loom_node *n = N(x, i), *w = N(x, n->src[1]);
    const loom_node *xs = N(x, n->src[0]); /* the (possibly folded) producer of x */
    int xmode = !folded(x, n->src[0]) ? 0 : xs->op == LOOM_OP_RMSNORM ? 1 : xs->op == LOOM_OP_SWIGLU ? 2 : -1;
    if (xmode < 0) return loom_err("vulkan: internal: a folded %s feeds a matmul", loom_op_name(xs->op));
    int res = -1;
    if (add >= 0) {
        const loom_node *an = N(x, add);
        res = an->src[0] == i ? an->src[1] : an->src[0];
    }
    vk_arg a[VK_NBIND] = {0}, wa;
    bool normw = false;
    float eps = 0;
    if (arg_of(x, n->src[1], false, &wa) < 0) return -1;
    if (xmode == 1) { /* x = RMSNORM(src)(*w): read src, normalise on the fly */
        if (arg_of(x, xs->src[0], false, &a[1]) < 0) return -1;
        normw = xs->n_src > 1 && xs->src[1] >= 0;
        if (normw && arg_of(x, xs->src[1], false, &a[4]) < 0) return -1;
        eps = xs->fp[0];
    } else if (xmode == 2) { /* x = SWIGLU(gate, up) */
        if (arg_of(x, xs->src[0], false, &a[1]) < 0 || arg_of(x, xs->src[1], false, &a[4]) < 0) return -1;
    } else if (arg_of(x, n->src[0], false, &a[1]) < 0) {
        return -1;
    }
    if (arg_of(x, add >= 0 ? add : i, true, &a[0]) < 0) return -1;
    if (res >= 0 && arg_of(x, res, false, &a[5]) < 0) return -1;
    bool bias = n->n_src > 2 && n->src[2] >= 0;
    vk_arg ba = {0};
    if (bias && arg_of(x, n->src[2], false, &ba) < 0) return -1;
    uint64_t Nn = (uint64_t)w->ne[0], K = (uint64_t)w->ne[1];
    uint64_t M = (uint64_t)loom_node_nelem(xs) / K;
    size_t rb = loom_dtype_nbytes(w->type, (int64_t)K);
    bool quant = loom_dtype_is_quant(w->type);
    uint64_t step = rows_per_chunk(d, rb);
    bool gemv = gemv_path(d, x, i);
    if (!gemv && (xmode || res >= 0)) return loom_err("vulkan: internal: fused producer on the tiled matmul");
    /* tiled: 128 x 128 tiles when there are enough of them to fill the GPU, else 64 x 64; few
     * tiles and a long K (a 896-wide down projection in prefill): split K as well */
    uint64_t big_tiles = ((M + 127) / 128) * ((Nn + 127) / 128);
    /* tensor cores (matmul_cm.comp) for f16/bf16 and block-quantised weights: x is rounded to f16
     * there, which only their tolerance absorbs, so f32 weights stay on the FMA kernel. Their 128 x 128
     * tiles want many more tiles than SMs (a 512-token prefill's ~150 leave the H100 half idle in
     * the second wave), hence a separate threshold (LOOM_VK_CM_BIG_TILES, default 512). M <= 8
     * (decode) stays on the GEMV, or on the FMA kernel where subgroups are off. */
    bool cm = !gemv && M > 8 && d->coopmat && (w->type == LOOM_F16 || w->type == LOOM_BF16 || quant);
#ifdef LOOM_VK_CM2
    if (cm && d->cm2) { /* LOOM_VK_CM2: on VK_NV_cooperative_matrix2 where rec_matmul_cm2 takes it */
        int c2 = rec_matmul_cm2(r, w, a, &wa, &ba, bias, M, Nn, K);
        if (c2) return c2 < 0 ? -1 : 0;
    }
#endif
    bool big = !gemv && M >= 128 && big_tiles >= (cm ? d->cm_big_tiles : 128);
    /* Quantised W on tensor cores: each chunk of rows is first dequantised to f16 in scratch
     * (dequant.comp), after any split-K partial products, and the f16 kernel reads that: in-tile
     * dequantisation (LOOM_VK_QCM=tiles) repeats the byte-wise block reads in every workgroup and
     * ran at the FMA kernel's speed (H100). */
    /* a matmul_cmv.comp variant (sg64 by default from cm_min_m rows, or LOOM_VK_CM_VARIANT's for
     * every tensor-core dispatch): its tile */
    const vk_cmv *cv = cm && d->cm_variant && d->cm_variant < N_CMV && M >= d->cm_min_m ? &cm_variants[d->cm_variant]
                                                                                        : NULL;
    /* LOOM_VK_CM_QTILE (the default with cooperative matrices): a quantised W on a variant with an
     * in-tile build for its type (sg64: all; cm_variants' qmask) is dequantised in its tile loads
     * (matmul_cmv.comp W_Q*), no f16 copy and no chunks of rows beyond the binding's; other
     * variants / types, and matmuls below sg64's cm_min_m rows, keep the f16 copy.
     * Without cooperative matrices: matmul_q.comp's QTILE build (qtile_shader) */
    bool qtile = quant && !gemv && d->cm_qtile && (d->cm_qtile_all || qtile_default_type(w->type)) &&
                 (cm ? cv && (cv->qmask >> w->type & 1u) : true);
    bool qcopy = cm && quant && !qtile && (!d->qcm_tiles || !qcm_tiles_ok(w->type));
    if (cv && quant && !qcopy && !qtile) cv = NULL; /* LOOM_VK_QCM=tiles: matmul_cm.comp */
    uint64_t tile = big ? 128 : 64, tm = cv ? cv->bm : tile, tn = cv ? cv->bn : tile;
    uint64_t tiles = ((M + tm - 1) / tm) * ((Nn + tn - 1) / tn);
    uint32_t ksplit = gemv ? 1 : ksplit_of(d, tiles, K, !bias || step >= Nn);
    /* scratch: [split-K partials][f16 copy of a chunk of W rows][f16 copy of x], each aligned */
    size_t al = d->align > 256 ? d->align : 256;
    size_t dq_at = ksplit > 1 ? ((size_t)M * Nn * 4 * ksplit + al - 1) / al * al : 0, xh_at = dq_at;
    if (qcopy) {
        uint64_t s2 = rows_per_chunk(d, (size_t)K * 2), cap = ((size_t)32 << 20) / ((size_t)K * 2);
        if (s2 > cap) s2 = cap ? cap : 1;
        if (step > s2) step = s2;
        xh_at = (dq_at + (size_t)step * K * 2 + al - 1) / al * al;
    }
    loom_spv_id sh;
    /* the decode GEMV a block at a time (matvec_qb.comp), qb_rows rows per invocation: per type and
     * size by default (qb_rows_default), or as LOOM_VK_GEMV_Q forces */
    bool dp;
    uint32_t qb_rows = gemv_q_rows(d, x, i, &dp);
    /* dpa: the most rows per invocation (4, 2, 1) that still leave 1024 row groups to spread over the
     * GPU (a guess for the A/B: blk4 lost at llama-1.1b's 2048-row K-type matrices, won at 7B) */
    if (dp && d->gemv_dp_auto) qb_rows = Nn >= 4096 ? 4 : Nn >= 2048 ? 2 : 1;
    if (dp)
        sh = dpshader(w->type, d->idot, 0); /* (the epilogue's builds chosen below) */
    else if (qb_rows)
        sh = qbshader(w->type);
    else if (qtile) /* quantised tiles dequantised in place (a variant's, or matmul_q.comp QTILE) */
        sh = cm ? cv->qt[w->type] : qtile_shader(w->type, big);
    else if (cv) /* a matmul_cmv.comp variant: the f16 copy of a quantised W is f16 */
        sh = w->type == LOOM_BF16 ? cv->bf16 : cv->f16;
    else if (quant && !qcopy) /* raw blocks dequantised in registers (shaders/wquant.glsl) */
        sh = qshader(w->type, gemv ? 1 : (cm ? 4 : 2) + big);
#ifdef LOOM_VK_COOPMAT
    else if (qcopy) /* the f16 copy in scratch */
        sh = big ? LOOM_SPV_MATMUL_CM_BIG_F16 : LOOM_SPV_MATMUL_CM_F16;
#endif
    else if (gemv)
        sh = wshader(d, w->type, LOOM_SPV_MATVEC_F32, LOOM_SPV_MATVEC_F16, LOOM_SPV_MATVEC_F16S, LOOM_SPV_MATVEC_BF16);
#ifdef LOOM_VK_COOPMAT
    else if (cm)
        sh = w->type == LOOM_F16 ? (big ? LOOM_SPV_MATMUL_CM_BIG_F16 : LOOM_SPV_MATMUL_CM_F16)
                                 : (big ? LOOM_SPV_MATMUL_CM_BIG_BF16 : LOOM_SPV_MATMUL_CM_BF16);
#endif
    else if (big) /* f16 from uint words: 16-bit loads were 4.5x slower in the tiled kernel (H100) */
        sh = wshader(d, w->type, LOOM_SPV_MATMUL_BIG_F32, LOOM_SPV_MATMUL_BIG_F16, LOOM_SPV_MATMUL_BIG_F16,
                     LOOM_SPV_MATMUL_BIG_BF16);
    else
        sh = wshader(d, w->type, LOOM_SPV_MATMUL_F32, LOOM_SPV_MATMUL_F16, LOOM_SPV_MATMUL_F16, LOOM_SPV_MATMUL_BF16);
    /* GEMV: a row per subgroup when there are many rows; when there are few (a 896-row down
     * projection), several subgroups per row so that ~1000 workgroups (LOOM_VK_GEMV_WGS) keep the
     * GPU's memory busy. 2 loads of 8 elements in flight per
     * invocation; LOOM_VK_GEMV_LOADS=4 doubles that for the A/B runs of block-quantised rows (whose 8
     * elements are 4-8 bytes, a quarter to half of f16's): not yet measured on a GPU. */
    uint32_t sg = d->subgroup_size ? d->subgroup_size : 32;
    uint64_t nchunk = step < Nn ? step : Nn;
    uint32_t spec[4];
    matvec_spec(d, nchunk, 1, (uint32_t)M, (uint32_t)xmode, spec);
    uint32_t wg = spec[0], nrows = spec[2];
    if (qb_rows) {
        /* matvec_qb.comp: an invocation takes units of qb_rows rows, so a group of rows
         * gets more invocations (fewer groups per workgroup) only while that many have a unit each
         * and the chunk has fewer than LOOM_VK_GEMV_WGS workgroups */
        /* units (shaders/qbunit.glsl SU): 32 weights, or 64 in the K types that read two
         * sub-blocks together (SU = 2). Q4_K / Q5_K / Q6_K matrices that are small for the GPU (rows
         * K <= 2048, or fewer than 2^24 weights) take 32-weight units instead, twice the invocations
         * a row where the chunk has few workgroups: on the 8-bit-x GEMV half-pair units (XSPEC bit 8:
         * 16 weights of each of the two sub-blocks that share quant bytes, so each byte is read once),
         * on matvec_qb.comp one sub-block (bit 7; it also suits K <= 2048 only). H100, tg128 t/s,
         * same lease, two rounds (session 14): llama-1.1b (every matrix small) q4_k_m 591-604 ->
         * 614-616, q5_k_m 547 -> 573-581, q6_k 594-596 -> 646-647 from session 13's units (one
         * sub-block at K <= 2048, else two); llama-7b Q4_K_M (no matrix small) 279 either way, and
         * 238 against 263 with half-pair units on its matrices too (an earlier call). Session 13: one
         * sub-block at 1.1b's K = 2048 +2.5-6%, at 7b -2%. */
        bool ktype = w->type == LOOM_Q4_K || w->type == LOOM_Q5_K || w->type == LOOM_Q6_K;
        vk_kunit ku = d->kunit;
        bool small = K <= 2048 || (uint64_t)Nn * K < ((uint64_t)1 << 24);
        bool khp = ktype && dp && (ku == VK_KUNIT_HP || (ku == VK_KUNIT_AUTO && small)); /* XSPEC bit 8 */
        bool ksu1 = ktype && !khp && (ku == VK_KUNIT_1 || ((ku == VK_KUNIT_AUTO || ku == VK_KUNIT_S13) && K <= 2048));
        uint64_t su = ksu1 || khp ? 1 : loom_dtype_blck(w->type) == 256 && w->type != LOOM_IQ4_XS ? 2 : 1;
        uint64_t groups = (nchunk + qb_rows - 1) / qb_rows, useful = (K / (32 * su) + sg - 1) / sg * sg;
        uint32_t ng = wg / sg;
        while (ng > 1 && (groups + ng - 1) / ng < d->gemv_wgs && wg / (ng / 2) <= useful) ng /= 2;
        nrows = ng * qb_rows;
        spec[2] = ng;
        spec[3] = (uint32_t)(dp && xmode == 2 ? 0 : xmode) | qb_rows << 2 | (ksu1 ? 1u << 7 : 0) |
                   (khp ? 1u << 8 : 0) | (khp && d->gemv_u2 ? 1u << 9 : 0); /* dp: quantx.comp did the SWIGLU */
    }
    /* LOOM_VK_QX_FOLD: a dp GEMV whose output the next dp GEMV reads as x (or through a folded RMSNORM)
     * writes it quantised as well (matvec_dp.comp EPI: 1, or 2 times the norm weight), so that GEMV
     * finds it cached and no quantx.comp dispatch (and barrier) runs for it. One chunk only (the block
     * counters count one dispatch's rows), whole blocks of outputs, at most 8 blocks per workgroup. */
    int epi_x = -1;
    bool epi_normw = false;
    vk_arg epi_e = {0};
    if (dp && step >= Nn && Nn % 32 == 0 && nrows <= 128)
        epi_x = qx_reader(r, x, add >= 0 ? add : i, Nn, &epi_normw, &epi_e);
    int gu = -1; /* DP_GU: the up GEMV this dispatch computes with gate i */
    if (dp && add < 0 && step >= Nn && Nn % 32 == 0 && nrows <= 128 && (gu = gu_partner(r, x, i, qb_rows)) >= 0) {
        epi_x = 2; /* the reader's x: the SWIGLU of the two */
        sh = dpshader(w->type, d->idot, 2);
        spec[3] |= 3u << 5;
        if (Nn / 32 > r->qcnt_need) r->qcnt_need = Nn / 32;
        if (arg_of(x, N(x, gu)->src[1], false, &a[3]) < 0 || arg_of(x, gu, true, &epi_e) < 0) return -1;
        r->gu_skip = gu + 1;
    } else if (epi_x >= 0) {
        sh = dpshader(w->type, d->idot, 1);
        spec[3] |= (epi_normw ? 2u : 1u) << 5;
        if (Nn / 32 > r->qcnt_need) r->qcnt_need = Nn / 32;
    }
    if (cm) { /* 8 (128 x 128 tiles) or 4 subgroups per workgroup, or the variant's count */
        spec[0] = (cv ? cv->nsg : big ? 8 : 4) * sg;
        spec[1] = sg;
        spec[2] = spec[3] = 0;
    }
    vk_arg out = a[0];
    size_t part = (size_t)M * Nn * 4;
    if (ksplit > 1) a[0] = scratch_arg(r, part * ksplit, true);
#ifdef LOOM_VK_COOPMAT
    /* x to f16 once, in scratch: the variant reads that */
    if (cv && cv->xh && rec_tohalf(r, &a[1], xh_at, M * K, 4) < 0) return -1;
#else
    (void)xh_at;
#endif
    uint32_t qhin = 0, qhout = 0, qcb = 0; /* dp: the headers' vec4 index in x, the output's; the counters' */
    int epi_region = 0;
    if (dp) { /* x to 8 bits (quantx.comp) once, into a qbuf region: qs words, then per-block headers */
        size_t hoff, nblk = (size_t)(M * K / 32), qlen = qx_layout(M, K, &hoff);
        if (qlen > r->qreg_need) r->qreg_need = qlen;
        bool xvec = elem_off(d, &a[1]) % 4 == 0 && (!a[4].b || elem_off(d, &a[4]) % 4 == 0);
        bool hit = r->qx.valid && r->qx.xmode == xmode && r->qx.normw == normw && r->qx.M == M && r->qx.K == K &&
                   arg_same(&r->qx.x, &a[1]) && arg_same(&r->qx.e, &a[4]);
        if (!hit) {
            int reg = qx_next_region(r);
            vk_arg q[VK_NBIND] = {0};
            q[0] = qbuf_at(r, reg * r->qreg, (size_t)(M * K), true);
            q[3] = qbuf_at(r, reg * r->qreg + hoff, nblk * 16, true);
            q[1] = a[1];
            q[4] = a[4];
            vk_pc qp = {.u = {(uint32_t)nblk, (uint32_t)(K / 32), (uint32_t)K, 0, 0, 0, xvec, normw}};
            uint32_t qspec[4] = {64, (uint32_t)xmode, 0, 0}, gx, gy;
            grid_rows((nblk + 63) / 64, &gx, &gy);
            if (dispatch(r, LOOM_SPV_QUANTX, qspec, q, &qp, gx, gy, 1) < 0) return -1;
            qx_set(r, &a[1], &a[4], xmode, normw, M, K, reg);
        }
        a[1] = qbuf_at(r, (size_t)r->qx.region * r->qreg, qlen, false);
        qhin = (uint32_t)(hoff / 16);
        a[4] = epi_e;
        if (epi_x >= 0) { /* binding 6: the other region, the output's x and the counters */
            size_t ho;
            epi_region = r->qx.region ^ 1;
            size_t olen = qx_layout(M, Nn, &ho);
            if (olen > r->qreg_need) r->qreg_need = olen;
            a[6] = qbuf_at(r, (size_t)epi_region * r->qreg, r->qreg, true);
            qhout = (uint32_t)(ho / 16);
            qcb = (uint32_t)(r->qdata / 4);
        }
    }
    for (uint64_t n0 = 0; n0 < Nn; n0 += step) {
        uint64_t n1 = n0 + step < Nn ? n0 + step : Nn, cnt = n1 - n0;
        a[2] = wa;
        a[2].off = wa.off + (size_t)n0 * rb;
        a[2].len = (size_t)cnt * rb;
        if (bias) { /* the bias rows of this chunk */
            a[3] = ba;
            a[3].off = ba.off + (size_t)n0 * 4;
            a[3].len = (size_t)cnt * 4;
        }
        vk_pc pc = {.u = {(uint32_t)M, (uint32_t)cnt, (uint32_t)K, bias && ksplit == 1, (uint32_t)n0, (uint32_t)Nn, 0,
                          ksplit, (uint32_t)(M * Nn)},
                    .f = {eps}};
        if (qcopy) { /* this chunk's rows to f16 (packed pairs), then the matmul reads those */
            vk_arg q[VK_NBIND] = {0};
            q[0] = scratch_at(r, dq_at, (size_t)cnt * K * 2, true);
            q[2] = a[2];
            vk_pc qp = {.u = {(uint32_t)(cnt * K / 8)}};
            uint32_t gx, gy;
            grid1(cnt * K / 8, &gx, &gy);
            if (dispatch(r, dqshader(w->type), NULL, q, &qp, gx, gy, 1) < 0) return -1;
            a[2] = scratch_at(r, dq_at, (size_t)cnt * K * 2, false);
            a[2].esize = 2;
        }
        if (gemv) {
            /* quantised W: K is whole blocks and the byte reads need no alignment */
            bool vec = K % 8 == 0 && (quant || elem_off(d, &a[2]) % 8 == 0) && elem_off(d, &a[1]) % 4 == 0 &&
                       (!a[4].b || elem_off(d, &a[4]) % 4 == 0);
            pc.u[6] = vec;
            pc.u[7] = normw;
            pc.u[8] = res >= 0;
            if (dp) {
                pc.u[10] = qhin;
                memcpy(&pc.f[1], &qhout, 4);
                memcpy(&pc.f[2], &qcb, 4);
            }
            uint32_t gx, gy;
            grid_rows((cnt + nrows - 1) / nrows, &gx, &gy);
            if (dispatch(r, sh, spec, a, &pc, gx, gy, 1) < 0) return -1;
        } else {
            if ((M + tm - 1) / tm > 65535)
                return loom_err("vulkan: matmul with %llu rows is too tall", (unsigned long long)M);
            /* vector tile loads where rows and bindings are aligned (f16 x: 8 halves a vector) */
            /* (a quantised row is whole blocks of bytes: its 8-element reads are always whole) */
            uint32_t xv = cv && cv->xh ? 8 : 4;
            pc.u[6] = (K % xv == 0 && elem_off(d, &a[1]) % xv == 0) |
                      (K % 8 == 0 && (quant || elem_off(d, &a[2]) % 8 == 0)) << 1;
            if (dispatch(r, sh, cm ? spec : NULL, a, &pc, (uint32_t)((cnt + tn - 1) / tn),
                         (uint32_t)((M + tm - 1) / tm), ksplit) < 0)
                return -1;
        }
    }
    if (ksplit > 1) { /* y = sum of the partial products (+ bias) */
        vk_arg s[VK_NBIND] = {0};
        s[0] = out;
        s[1] = a[0];
        s[1].write = false;
        if (bias) s[2] = ba;
        vk_pc pc = {.u = {5, (uint32_t)(M * Nn), (uint32_t)Nn, ksplit, bias}};
        uint32_t gx, gy;
        grid1(M * Nn, &gx, &gy);
        if (dispatch(r, LOOM_SPV_ELTWISE, NULL, s, &pc, gx, gy, 1) < 0) return -1;
    }
    if (epi_x >= 0) { /* the output, quantised by the epilogue, is the cached x of its reader */
        qx_set(r, &out, &epi_e, epi_x, epi_normw, M, Nn, epi_region); /* (DP_GU: x gate, e up, XMODE 2) */
        r->n_qfold++;
    }
    return 0;
}

static int rec_eltwise(vk_rec *r, const loom_exec_ctx *x, int i, uint32_t op) {
    const loom_node *n = N(x, i);
    vk_arg a[VK_NBIND] = {0};
    if (arg_of(x, i, true, &a[0]) < 0 || arg_of(x, n->src[0], false, &a[1]) < 0) return -1;
    uint64_t ne = (uint64_t)loom_node_nelem(n), nb = ne;
    if (op == 0 || op == 1 || op == 4 || op == 7) {
        if (arg_of(x, n->src[1], false, &a[2]) < 0) return -1;
        nb = (uint64_t)loom_node_nelem(N(x, n->src[1]));
    }
    vk_pc pc = {.u = {op, (uint32_t)ne, (uint32_t)nb}, .f = {n->fp[0]}};
    uint32_t gx, gy;
    grid1(ne, &gx, &gy);
    return dispatch(r, LOOM_SPV_ELTWISE, NULL, a, &pc, gx, gy, 1);
}

static int rec_rows(vk_rec *r, const loom_exec_ctx *x, int i, loom_spv_id sh) {
    const loom_node *n = N(x, i);
    vk_arg a[VK_NBIND] = {0};
    if (arg_of(x, i, true, &a[0]) < 0 || arg_of(x, n->src[0], false, &a[1]) < 0) return -1;
    bool w = sh == LOOM_SPV_RMSNORM && n->n_src > 1 && n->src[1] >= 0;
    if (w && arg_of(x, n->src[1], false, &a[2]) < 0) return -1;
    uint64_t cols = (uint64_t)n->ne[n->ndim - 1], rows = cols ? (uint64_t)loom_node_nelem(n) / cols : 0;
    vk_pc pc = {.u = {(uint32_t)rows, (uint32_t)cols, w}, .f = {n->fp[0]}};
    uint32_t gx, gy;
    grid_rows(rows, &gx, &gy);
    return dispatch(r, sh, NULL, a, &pc, gx, gy, 1);
}

static int rec_rope(vk_rec *r, const loom_exec_ctx *x, int i) {
    const loom_node *n = N(x, i);
    vk_arg a[VK_NBIND] = {0};
    if (arg_of(x, i, true, &a[0]) < 0 || arg_of(x, n->src[0], false, &a[1]) < 0 ||
        arg_of(x, n->src[1], false, &a[2]) < 0)
        return -1;
    bool ff = n->n_src > 2 && n->src[2] >= 0;
    if (ff && arg_of(x, n->src[2], false, &a[3]) < 0) return -1;
    uint32_t H = (uint32_t)n->ip[0], hd = (uint32_t)n->ip[1], rot = (uint32_t)n->ip[3];
    uint64_t S = (uint64_t)loom_node_nelem(n) / ((uint64_t)H * hd);
    vk_pc pc = {.u = {(uint32_t)S, H, hd, (uint32_t)n->ip[2], rot, ff}, .f = {n->fp[0], n->fp[1]}};
    uint32_t gx, gy;
    grid1(S * H * (rot / 2 + (hd - rot)), &gx, &gy);
    return dispatch(r, LOOM_SPV_ROPE, NULL, a, &pc, gx, gy, 1);
}

/* A plain copy of `len` floats (PERMUTE with the identity), for nodes whose output does not share
 * its source's storage. */
static int rec_copy(vk_rec *r, vk_arg dst, vk_arg src) {
    vk_arg a[VK_NBIND] = {0};
    a[0] = dst;
    a[1] = src;
    uint64_t ne = src.len / 4;
    vk_pc pc = {.u = {1, 1, 1, (uint32_t)ne, 0, 0, 0, 1, (uint32_t)ne}};
    uint32_t gx, gy;
    grid1(ne, &gx, &gy);
    return dispatch(r, LOOM_SPV_PERMUTE, NULL, a, &pc, gx, gy, 1);
}

static int rec_kv_store(vk_rec *r, const loom_exec_ctx *x, int i) {
    const loom_node *n = N(x, i), *c = N(x, n->src[0]);
    int rope = folded(x, n->src[1]) ? n->src[1] : -1; /* its rows are the folded ROPE's input */
    vk_arg a[VK_NBIND] = {0}, cache;
    if (arg_of(x, i, true, &a[0]) < 0 || arg_of(x, n->src[0], false, &cache) < 0 ||
        arg_of(x, rope >= 0 ? N(x, rope)->src[0] : n->src[1], false, &a[1]) < 0 ||
        arg_of(x, n->src[2], false, &a[2]) < 0)
        return -1;
    const loom_node *ro = rope >= 0 ? N(x, rope) : NULL;
    bool ff = ro && ro->n_src > 2 && ro->src[2] >= 0;
    if (ff && arg_of(x, ro->src[2], false, &a[3]) < 0) return -1;
    if (cache.b != a[0].b || cache.off != a[0].off) { /* not aliased: start from a copy of the cache */
        if (rec_copy(r, a[0], cache) < 0) return -1;
    }
    uint64_t C = (uint64_t)c->ne[0], W = (uint64_t)c->ne[1];
    uint64_t S = (uint64_t)loom_node_nelem(N(x, n->src[2]));
    vk_pc pc = {.u = {(uint32_t)S, (uint32_t)W, (uint32_t)C}};
    if (ro) {
        pc.u[3] = 1;
        pc.u[4] = (uint32_t)ro->ip[0], pc.u[5] = (uint32_t)ro->ip[1], pc.u[6] = (uint32_t)ro->ip[2];
        pc.u[7] = (uint32_t)ro->ip[3], pc.u[8] = ff;
        pc.f[0] = ro->fp[0], pc.f[1] = ro->fp[1];
    } else {
        pc.u[5] = 1; /* head dim for the shader's c % hd */
    }
    uint32_t gx, gy;
    grid1(S * W, &gx, &gy);
    return dispatch(r, LOOM_SPV_KV_STORE, NULL, a, &pc, gx, gy, 1);
}

/* Key splits for attention: enough workgroups to fill a GPU when there are few query rows, none
 * when a split would get little work. Depends only on the shapes, never on the step. */
static uint32_t attn_splits(uint64_t groups, uint64_t C) {
    if (groups >= 256) return 1;
    uint64_t s = 256 / groups;
    if (s > C / 128) s = C / 128;
    if (s > 64) s = 64;
    return s < 1 ? 1 : (uint32_t)s;
}

/* Paged attention: binding 4 spans the pos, seq and table inputs (all i32, in one buffer: the
 * arena), whose element offsets within it go to u[8..10]; u[7] = block size, u[11] = table width. */
static int paged_args(const loom_exec_ctx *x, const loom_node *n, vk_arg *span, vk_pc *pc) {
    vk_arg p[3];
    for (int k = 0; k < 3; k++)
        if (arg_of(x, n->src[k ? 3 + k : 3], false, &p[k]) < 0) return -1;
    size_t lo = p[0].off, hi = p[0].off + p[0].len;
    for (int k = 1; k < 3; k++) {
        if (p[k].b != p[0].b) return loom_err("vulkan: paged attention inputs must share one buffer");
        lo = p[k].off < lo ? p[k].off : lo;
        hi = p[k].off + p[k].len > hi ? p[k].off + p[k].len : hi;
    }
    *span = (vk_arg){.b = p[0].b, .off = lo, .len = hi - lo, .esize = 4, .write = false};
    pc->u[7] = (uint32_t)n->ip[3];
    for (int k = 0; k < 3; k++) pc->u[8 + k] = (uint32_t)((p[k].off - lo) / 4);
    pc->u[11] = (uint32_t)N(x, n->src[5])->ne[1];
    return 0;
}

/* attn_fa.comp's shared memory for head dim hd (its Qs, KV, Ps, Xs, Lr/Lo arrays: R = BC = 32 slots
 * and keys, hd / 4 vec4 per row, K/V rows padded by one vec4) */
static uint64_t fa_shared_bytes(uint64_t hd) {
    const uint64_t R = 32, BC = 32, g4 = hd / 4;
    return 16 * (R * g4 + BC * (g4 + 1)) + 4 * R * (BC + 1) + 4 * R * 8 + 8 * R;
}

/* attn_cm.comp's shared memory for head dim hd and nsg subgroups (T: 64 rows of hd + 8 halves; per
 * subgroup a 16 x 36 f32 score slice, a 16 x 40 f16 P slice, a 16 x 16 f32 alpha matrix, 64 floats
 * of lane exchange (inside the alpha matrix with 8); per slot (16 nsg) 1/l and per row its key
 * range): 37,632 B at head dim 128 with 4, 47,616 B at head dim 64 with 8 */
static uint64_t cm_attn_shared_bytes(uint64_t hd, uint64_t nsg) {
    return 64 * (hd + 8) * 2 + nsg * (16 * 36 * 4 + 16 * 40 * 2 + 256 * 4) + (nsg > 4 ? 0 : nsg * 64 * 4) + 3 * 16 * nsg * 4;
}

/* attn_cm.comp's build for head dim hd and variant v (vk_dev.attn_cm_var: 0 plain, 1 ROWSCALE_SHARED
 * (LOOM_VK_FA=cms), 2 PREFETCH (cmp, the default), 3 PREFETCH + NSG8 (cmp8: 8 subgroups; head dims
 * <= 64, 128 takes the 4-subgroup PREFETCH build)); LOOM_SPV_COUNT: none (then attn_fa.comp or
 * attention.comp) */
static loom_spv_id cm_attn_shader(uint32_t hd, uint32_t v) {
#ifdef LOOM_VK_COOPMAT
    static const loom_spv_id ids[4][4] = {
        {LOOM_SPV_ATTN_CM_H16, LOOM_SPV_ATTN_CM_H16S, LOOM_SPV_ATTN_CM_H16P, LOOM_SPV_ATTN_CM_H16P8},
        {LOOM_SPV_ATTN_CM_H32, LOOM_SPV_ATTN_CM_H32S, LOOM_SPV_ATTN_CM_H32P, LOOM_SPV_ATTN_CM_H32P8},
        {LOOM_SPV_ATTN_CM_H64, LOOM_SPV_ATTN_CM_H64S, LOOM_SPV_ATTN_CM_H64P, LOOM_SPV_ATTN_CM_H64P8},
        {LOOM_SPV_ATTN_CM_H128, LOOM_SPV_ATTN_CM_H128S, LOOM_SPV_ATTN_CM_H128P, LOOM_SPV_ATTN_CM_H128P}};
    int k = hd == 16 ? 0 : hd == 32 ? 1 : hd == 64 ? 2 : hd == 128 ? 3 : -1;
    if (k >= 0 && v < 4) return ids[k][v];
#else
    (void)hd, (void)v;
#endif
    return LOOM_SPV_COUNT;
}

/* Whether every matmul weight of the plan is f32 (and there is one): such a model keeps f32 prefill
 * attention (attn_fa.comp) by default, as its matmuls keep the f32 FMA kernel. attn_cm.comp rounds
 * q, k, v and p to f16: on the f32 fixtures' long references (H100, 2026-12-06) logits moved by
 * 2.3e-3 to 7.4e-3, over `loom check`'s 1e-3 for f32 weights, against 2.8e-5 to 1.7e-4 on attn_fa. */
static bool plan_all_f32(vk_rec *r, const loom_exec_ctx *x) {
    if (r->all_f32) return r->all_f32 > 1;
    const loom_graph *g = x->plan->g;
    int mm = 0;
    for (int k = 0; k < g->n && mm >= 0; k++) {
        const loom_node *n = &g->nodes[k];
        if (n->op != LOOM_OP_MATMUL || n->replaced_by >= 0) continue;
        mm = N(x, n->src[1])->type == LOOM_F32 ? mm + 1 : -1;
    }
    r->all_f32 = mm > 0 ? 2 : 1;
    return mm > 0;
}

/* The folded ROPE of q and KV_STOREs of a "rope-kv-attention" (vk_fuse.c): binding 1 spans the raw
 * q, k and v rows (one arena; u[11..13] their element offsets in it), bindings 2 and 3 are the caches,
 * written (attention.comp RKV). */
static int rkv_args(const loom_exec_ctx *x, const loom_node *n, vk_arg a[VK_NBIND], vk_pc *pc) {
    const loom_node *rq = N(x, n->src[0]), *sk = N(x, n->src[1]), *sv = N(x, n->src[2]);
    const loom_node *rk = N(x, sk->src[1]);
    int rows[3] = {rq->src[0], rk->src[0], sv->src[1]};
    vk_arg r3[3];
    for (int k = 0; k < 3; k++)
        if (arg_of(x, rows[k], false, &r3[k]) < 0) return -1;
    size_t lo = r3[0].off, hi = r3[0].off + r3[0].len;
    for (int k = 1; k < 3; k++) {
        if (r3[k].b != r3[0].b)
            return loom_err("vulkan: attention '%s': its q, k and v rows are not in one buffer", n->name);
        if (r3[k].off < lo) lo = r3[k].off;
        if (r3[k].off + r3[k].len > hi) hi = r3[k].off + r3[k].len;
    }
    a[1] = (vk_arg){.b = r3[0].b, .off = lo, .len = hi - lo, .esize = 4};
    for (int k = 0; k < 3; k++) pc->u[11 + k] = (uint32_t)((r3[k].off - lo) / 4);
    pc->u[14] = (uint32_t)rq->ip[2], pc->u[15] = (uint32_t)rq->ip[3];
    pc->f[4] = rq->fp[0], pc->f[5] = rq->fp[1];
    return arg_of(x, sk->src[0], true, &a[2]) < 0 || arg_of(x, sv->src[0], true, &a[3]) < 0 ? -1 : 0;
}

static int rec_attention(vk_rec *r, const loom_exec_ctx *x, int i) {
    vk_dev *d = r->d;
    const loom_node *n = N(x, i), *kc = N(x, n->src[1]);
    vk_arg a[VK_NBIND] = {0};
    vk_pc pg = {0}, pr = {0};
    bool paged = n->n_src > 4, rkv = folded(x, n->src[0]);
    if (arg_of(x, i, true, &a[0]) < 0 ||
        (rkv ? rkv_args(x, n, a, &pr)
             : arg_of(x, n->src[0], false, &a[1]) < 0 || arg_of(x, n->src[1], false, &a[2]) < 0 ||
                   arg_of(x, n->src[2], false, &a[3]) < 0) < 0 ||
        (paged ? paged_args(x, n, &a[4], &pg) : arg_of(x, n->src[3], false, &a[4])) < 0)
        return -1;
    uint32_t H = (uint32_t)n->ip[0], Hkv = (uint32_t)n->ip[1], hd = (uint32_t)n->ip[2];
    uint64_t S = (uint64_t)loom_node_nelem(n) / ((uint64_t)H * hd), C = (uint64_t)kc->ne[0];
    /* query heads sharing a kv head go to one workgroup, at most 8 at a time */
    uint32_t G = H / Hkv, gw = G < 8 ? G : 8;
    /* decode (S < 64, rows too few for the tiled prefill kernels): at most LOOM_VK_ATT_GW query heads
     * a workgroup (default 1): 8 left a 1.1B model 4 workgroups a layer, each doing 8 heads' dot
     * products a key; now each K / V row is read once per head (from L2 but for the first) */
    if (S < 64 && d->att_gw && gw > d->att_gw) gw = d->att_gw;
    uint32_t ngrp = (G + gw - 1) / gw;
    uint32_t gx = Hkv * ngrp;
    uint32_t ns = attn_splits(S * gx, C);
    uint32_t spec[4] = {128, gw, hd, 0};
    loom_spv_id sh = d->subgroup_arith && d->subgroup_size >= 4 ? LOOM_SPV_ATTENTION : LOOM_SPV_ATTENTION_NOSG;
    vk_pc pc = {.u = {(uint32_t)S, H, Hkv, hd, (uint32_t)C, ns}, .f = {n->fp[0], n->fp[1]}};
    uint32_t window = (uint32_t)n->ip[4]; /* as bits in f[2] (common.glsl att_lo) */
    memcpy(&pc.f[2], &window, sizeof window);
    uint32_t ring = (uint32_t)n->ip[5]; /* as bits in f[3] (common.glsl att_ring) */
    memcpy(&pc.f[3], &ring, sizeof ring);
    for (int k = 7; k < 12; k++) pc.u[k] = pg.u[k];
    if (rkv) { /* (not paged: u[7..11] are free) */
        for (int k = 11; k < 16; k++) pc.u[k] = pr.u[k];
        pc.f[4] = pr.f[4], pc.f[5] = pr.f[5];
        sh = LOOM_SPV_ATTENTION_RKV; /* vk_fuse.c folds only where the subgroup build runs */
    }
    pc.u[6] = hd % 4 == 0 && elem_off(d, &a[2]) % 4 == 0 && elem_off(d, &a[3]) % 4 == 0; /* vec4 K/V loads */
    if (S > 65535 || gx > 65535) return loom_err("vulkan: attention over %llu rows is too large", (unsigned long long)S);
    /* prefill on tensor cores (attn_cm.comp, LOOM_VK_FA=cm, the default with cooperative matrices):
     * 64 (row, head) slots per workgroup, 16 per subgroup; head dims 16, 32, 64, 128; not for ring
     * caches (keys at j % C) or block tables; not for all-f32 models unless LOOM_VK_FA names it
     * (plan_all_f32) */
    bool pf = !paged && !ring && S >= 64 && pc.u[6] && elem_off(d, &a[1]) % 4 == 0;
    loom_spv_id cmsh = cm_attn_shader(hd, d->attn_cm_var);
    uint32_t nsg = d->attn_cm_var == 3 && hd <= 64 ? 8 : 4;
    if (nsg == 8 && cm_attn_shared_bytes(hd, 8) > d->props.limits.maxComputeSharedMemorySize)
        nsg = 4, cmsh = cm_attn_shader(hd, 2); /* cmp8 where 8 subgroups' slices do not fit: cmp */
    if (pf && d->attn_cm && cmsh != LOOM_SPV_COUNT && (d->attn_cm_forced || !plan_all_f32(r, x)) &&
        cm_attn_shared_bytes(hd, nsg) <= d->props.limits.maxComputeSharedMemorySize) {
        uint32_t nr = 16 * nsg / gw, cspec[4] = {nsg * d->subgroup_size, gw, 0, d->subgroup_size};
        if (!r->sizing) d->n_attn_cm++;
        return dispatch(r, cmsh, cspec, a, &pc, gx, (uint32_t)((S + nr - 1) / nr), 1);
    }
    /* prefill: tiles of 32 (row, head) slots share each K/V tile (attn_fa.comp) */
    /* (only where its shared memory fits the device: at head dim 128 it needs 38,784 B, more than
     * the 32 KiB some GPUs and lavapipe have) */
    if (pf && hd <= 128 && hd % 4 == 0 && !d->no_fa && fa_shared_bytes(hd) <= d->props.limits.maxComputeSharedMemorySize) {
        uint32_t nr = 32 / gw;
        return dispatch(r, LOOM_SPV_ATTN_FA, spec, a, &pc, gx, (uint32_t)((S + nr - 1) / nr), 1);
    }
    /* LOOM_VK_ACOMB: the last split of each (kv head group, row) to finish merges them (attention_c),
     * and (attention_cq, qe) writes the 8-bit x of a dp GEMV reading the output as is: no
     * attn_combine.comp dispatch, no barrier. A one-split decode (a short cache: C < 256 keys) takes
     * attention_cq too where qe (its direct branch: no partials, no counters) instead of the plain
     * attention and a quantx.comp dispatch after a barrier. Counters after the region's x (qbuf). */
    uint64_t K = (uint64_t)H * hd;
    bool nw;
    vk_arg ne;
    bool acomb = r->acomb && r->k >= 0 && !paged && (sh == LOOM_SPV_ATTENTION || sh == LOOM_SPV_ATTENTION_RKV);
    bool qe = acomb && hd % 32 == 0 && hd <= 256 && qx_reader(r, x, i, K, &nw, &ne) == 0;
    if (ns == 1 && !qe) return dispatch(r, sh, spec, a, &pc, gx, (uint32_t)S, 1);
    vk_arg out = a[0];
    a[0] = (vk_arg){0};
    a[5] = scratch_arg(r, (size_t)S * H * ns * (hd + 2) * 4, true);
    if (acomb) {
        size_t hoff = 0, qlen = qx_layout(S, K, &hoff);
        if (qe && qlen > r->qreg_need) r->qreg_need = qlen;
        if (S * gx > r->qcnt_need) r->qcnt_need = S * gx;
        int reg = qx_next_region(r);
        a[0] = out;
        a[6] = qbuf_at(r, (size_t)reg * r->qreg, r->qreg, true);
        pc.u[9] = (uint32_t)(r->qdata / 4);
        pc.u[10] = (uint32_t)(hoff / 16);
        loom_spv_id csh = rkv ? (qe ? LOOM_SPV_ATTENTION_CQ_RKV : LOOM_SPV_ATTENTION_C_RKV)
                              : (qe ? LOOM_SPV_ATTENTION_CQ : LOOM_SPV_ATTENTION_C);
        if (dispatch(r, csh, spec, a, &pc, gx, (uint32_t)S, ns) < 0)
            return -1;
        if (qe) {
            qx_set(r, &out, &ne, 0, false, S, K, reg);
            r->n_qfold++;
        }
        return 0;
    }
    if (dispatch(r, sh, spec, a, &pc, gx, (uint32_t)S, ns) < 0) return -1;
    vk_arg c[VK_NBIND] = {0};
    c[0] = out;
    c[4] = a[4];
    c[5] = a[5];
    c[5].write = false;
    /* LOOM_VK_QX_FOLD (with LOOM_VK_ACOMB=0 or a paged / no-subgroup attention): the combine also
     * writes its output quantised when the next dp GEMV reads it as x as it is (the o projection): a
     * workgroup has a head's hd outputs, whole 32-blocks */
    if (!paged && hd % 32 == 0 && hd <= 256 && qx_reader(r, x, i, K, &nw, &ne) == 0) {
        size_t hoff, qlen = qx_layout(S, K, &hoff);
        if (qlen > r->qreg_need) r->qreg_need = qlen;
        int reg = qx_next_region(r);
        size_t base = (size_t)reg * r->qreg;
        c[6] = qbuf_at(r, base, qlen, true);
        vk_pc cp = pc;
        cp.u[10] = (uint32_t)(hoff / 16);
        if (dispatch(r, LOOM_SPV_ATTN_COMBINE_Q, NULL, c, &cp, H, (uint32_t)S, 1) < 0) return -1;
        qx_set(r, &out, &ne, 0, false, S, K, reg);
        r->n_qfold++;
        return 0;
    }
    return dispatch(r, LOOM_SPV_ATTN_COMBINE, NULL, c, &pc, H, (uint32_t)S, 1);
}

/* moe_mm.comp for an expert stack of type t (block-quantised stacks dequantise in registers,
 * shaders/wquant.glsl, like the matvec). */
static loom_spv_id moe_shader(vk_dev *d, loom_dtype t) {
    static const loom_spv_id q[LOOM_DTYPE_COUNT] = {
        [LOOM_Q8_0] = LOOM_SPV_MOE_MM_Q8_0, [LOOM_Q4_0] = LOOM_SPV_MOE_MM_Q4_0, [LOOM_Q4_K] = LOOM_SPV_MOE_MM_Q4_K,
        [LOOM_Q6_K] = LOOM_SPV_MOE_MM_Q6_K, [LOOM_Q4_1] = LOOM_SPV_MOE_MM_Q4_1, [LOOM_Q5_0] = LOOM_SPV_MOE_MM_Q5_0,
        [LOOM_Q5_1] = LOOM_SPV_MOE_MM_Q5_1, [LOOM_Q2_K] = LOOM_SPV_MOE_MM_Q2_K, [LOOM_Q3_K] = LOOM_SPV_MOE_MM_Q3_K,
        [LOOM_Q5_K] = LOOM_SPV_MOE_MM_Q5_K, [LOOM_IQ4_NL] = LOOM_SPV_MOE_MM_IQ4_NL,
        [LOOM_IQ4_XS] = LOOM_SPV_MOE_MM_IQ4_XS};
    if (loom_dtype_is_quant(t)) return q[t];
    return wshader(d, t, LOOM_SPV_MOE_MM_F32, LOOM_SPV_MOE_MM_F16, LOOM_SPV_MOE_MM_F16S, LOOM_SPV_MOE_MM_BF16);
}

/* The expert GEMV (matvec.comp MOE) / grouped tiles (matmul_q.comp MOE) for an expert stack of type t */
static loom_spv_id moe_fast_shader(vk_dev *d, loom_dtype t, bool gemv) {
#define MV(T) [LOOM_##T] = {LOOM_SPV_MATVEC_MOE_##T, LOOM_SPV_MATMUL_MOE_##T}
    static const loom_spv_id q[LOOM_DTYPE_COUNT][2] = {MV(Q8_0), MV(Q4_0), MV(Q4_K), MV(Q6_K),   MV(Q4_1),   MV(Q5_0),
                                                       MV(Q5_1), MV(Q2_K), MV(Q3_K), MV(Q5_K), MV(IQ4_NL), MV(IQ4_XS)};
#undef MV
    if (loom_dtype_is_quant(t)) return q[t][!gemv];
    if (gemv)
        return wshader(d, t, LOOM_SPV_MATVEC_MOE_F32, LOOM_SPV_MATVEC_MOE_F16, LOOM_SPV_MATVEC_MOE_F16S,
                       LOOM_SPV_MATVEC_MOE_BF16);
    /* f16 from uint words in the tiles, as matmul.comp */
    return wshader(d, t, LOOM_SPV_MATMUL_MOE_F32, LOOM_SPV_MATMUL_MOE_F16, LOOM_SPV_MATMUL_MOE_F16,
                   LOOM_SPV_MATMUL_MOE_BF16);
}

/* LOOM_VK_MOE=auto: the expert GEMVs serve a step of at most this many routed slots (rows x k), e.g.
 * one or two decode rows of a top-8 model; more rows are grouped by expert and tiled */
#define VK_MOE_GEMV_SLOTS 16
#define VK_MOE_TILE 64 /* matmul_q.comp's rows per tile without BIG */

/* The expert GEMV (matvec.comp MOE) over nz rows of y: gate / up (down = false; z = slot) or the
 * down products summed with the routing weights (down; z = row, x = SWIGLU(gate, up) folded, XMODE 2). */
static int moe_gemv(vk_rec *r, const loom_node *w, vk_arg a[VK_NBIND], uint64_t N, uint64_t K, uint32_t k,
                    uint64_t nz, bool down) {
    vk_dev *d = r->d;
    uint32_t spec[4];
    matvec_spec(d, N, nz, 1, down ? 2u : 0u, spec);
    uint32_t nrows = spec[2];
    bool quant = loom_dtype_is_quant(w->type);
    bool vec = K % 8 == 0 && (quant || elem_off(d, &a[2]) % 8 == 0) && elem_off(d, &a[1]) % 4 == 0 &&
               (!a[4].b || elem_off(d, &a[4]) % 4 == 0);
    vk_pc pc = {.u = {1, (uint32_t)N, (uint32_t)K, 0, 0, (uint32_t)N, vec, 0, 0, k, down}};
    return dispatch(r, moe_fast_shader(d, w->type, true), spec, a, &pc, (uint32_t)((N + nrows - 1) / nrows), 1,
                    (uint32_t)nz);
}

/* The grouped expert tiles (matmul_q.comp MOE): y rows = slots, x rows gathered through the order in
 * grp (moe_group.comp), one dispatch over every expert's tiles (ntile entries) */
static int moe_tiles(vk_rec *r, const loom_node *w, vk_arg a[VK_NBIND], uint64_t N, uint64_t K, uint32_t k,
                     uint64_t SK, uint64_t ntile, bool down) {
    vk_dev *d = r->d;
    bool vec = K % 8 == 0 && (loom_dtype_is_quant(w->type) || elem_off(d, &a[2]) % 8 == 0);
    vk_pc pc = {.u = {0, (uint32_t)N, (uint32_t)K, 0, 0, (uint32_t)N, vec, 0, 0, k, down, (uint32_t)SK}};
    return dispatch(r, moe_fast_shader(d, w->type, false), NULL, a, &pc, (uint32_t)((N + VK_MOE_TILE - 1) / VK_MOE_TILE),
                    (uint32_t)ntile, 1);
}

/* MOE (graph.h): routes into scratch (moe_route.comp), then the expert products, by LOOM_VK_MOE
 * (vk_device.c) and the row count:
 *  - gemv (few routed slots: decode): gate and up per slot (matvec.comp MOE, the expert id read from
 *    the routes in the shader), then the down products summed with the routing weights, the SwiGLU
 *    folded into its x loads: 4 dispatches, 3 barriers.
 *  - mm: the slots grouped by expert (moe_group.comp: counting sort into an order list and a tile
 *    table), gate and up as tiles of one expert's gathered rows (matmul_q.comp MOE, one dispatch
 *    over all experts), SwiGLU in place (eltwise.comp), the down tiles per slot, then the weighted
 *    sum over each row's k slots (moe_sum.comp): 7 dispatches, 5 barriers.
 *  - naive: gate and up per (row, slot) with a workgroup per output element (moe_mm.comp), SwiGLU,
 *    down products summed (moe_mm.comp).
 * Scratch: routes [S, 2k], gate [S*k, F], up [S*k, F]; mm also the order and tile table (uint) and
 * the down products [S*k, D]. */
static int rec_moe(vk_rec *r, const loom_exec_ctx *x, int i) {
    vk_dev *d = r->d;
    const loom_node *n = N(x, i), *wg = N(x, n->src[2]), *wd = N(x, n->src[4]);
    uint64_t D = (uint64_t)n->ne[n->ndim - 1], S = (uint64_t)loom_node_nelem(n) / D;
    uint64_t E = (uint64_t)N(x, n->src[1])->ne[N(x, n->src[1])->ndim - 1], F = (uint64_t)wg->ne[1];
    uint32_t k = (uint32_t)n->ip[0];
    if (S * k > 65535 || D > 65535 || F > 65535)
        return loom_err("vulkan: moe over %llu rows x %u experts (width %llu, %llu) is too large", (unsigned long long)S,
                        k, (unsigned long long)D, (unsigned long long)F);
    uint64_t SK = S * k;
    int mode = (int)d->moe; /* 1 naive, 2 gemv, 3 mm */
    if (mode == 0) mode = SK <= VK_MOE_GEMV_SLOTS && d->subgroup_arith ? 2 : 3;
    if (mode == 2 && !d->subgroup_arith) mode = 3;
    if (mode == 3 && E > 1024) mode = 1; /* moe_group.comp's shared counters */
    size_t al = d->align > 256 ? d->align : 256;
#define MOE_AL(v) (((size_t)(v) + al - 1) / al * al)
    uint64_t ntile = (SK + VK_MOE_TILE - 1) / VK_MOE_TILE + (E < SK ? E : SK); /* >= sum over experts of their tiles */
    size_t rb = (size_t)SK * 2 * 4, hb = (size_t)SK * F * 4, gb = (size_t)(SK + 3 * ntile) * 4, db = (size_t)SK * D * 4;
    size_t go = MOE_AL(rb), uo = go + MOE_AL(hb), qo = uo + MOE_AL(hb), dno = qo + MOE_AL(gb);
#undef MOE_AL
    vk_arg route = scratch_at(r, 0, rb, true), gate = scratch_at(r, go, hb, true), up = scratch_at(r, uo, hb, true);
    vk_arg a[VK_NBIND] = {0};
    a[0] = route;
    if (arg_of(x, n->src[1], false, &a[1]) < 0) return -1;
    vk_pc pc = {.u = {(uint32_t)S, (uint32_t)E, k, (uint32_t)n->ip[1]}};
    if (dispatch(r, LOOM_SPV_MOE_ROUTE, NULL, a, &pc, (uint32_t)((S + 63) / 64), 1, 1) < 0) return -1;
    route.write = false;
    vk_arg grp = {0};
    if (mode == 3) { /* group the slots by expert */
        vk_arg g[VK_NBIND] = {0};
        g[0] = scratch_at(r, qo, gb, true);
        g[1] = route;
        vk_pc gp = {.u = {(uint32_t)S, (uint32_t)E, k, VK_MOE_TILE, (uint32_t)ntile}};
        if (dispatch(r, LOOM_SPV_MOE_GROUP, NULL, g, &gp, 1, 1, 1) < 0) return -1;
        grp = g[0];
        grp.write = false;
    }
    for (int m = 0; m < 2; m++) { /* gate, up */
        vk_arg b[VK_NBIND] = {0};
        b[0] = m ? up : gate;
        b[3] = route;
        b[4] = grp;
        const loom_node *w = N(x, n->src[2 + m]);
        if (arg_of(x, n->src[0], false, &b[1]) < 0 || arg_of(x, n->src[2 + m], false, &b[2]) < 0) return -1;
        if (mode == 2) {
            if (moe_gemv(r, w, b, F, D, k, SK, false) < 0) return -1;
        } else if (mode == 3) {
            if (moe_tiles(r, w, b, F, D, k, SK, ntile, false) < 0) return -1;
        } else {
            vk_pc p2 = {.u = {(uint32_t)F, (uint32_t)D, k, (uint32_t)SK, 0}};
            if (dispatch(r, moe_shader(d, w->type), NULL, b, &p2, (uint32_t)F, (uint32_t)SK, 1) < 0) return -1;
        }
    }
    gate.write = up.write = false;
    if (mode == 2) { /* down on SWIGLU(gate, up), summed over the slots with their weights */
        vk_arg e[VK_NBIND] = {0};
        e[1] = gate, e[4] = up, e[3] = route;
        if (arg_of(x, i, true, &e[0]) < 0 || arg_of(x, n->src[4], false, &e[2]) < 0) return -1;
        return moe_gemv(r, wd, e, D, F, k, S, true);
    }
    vk_arg c[VK_NBIND] = {0};
    c[0] = gate, c[0].write = true;
    c[1] = gate;
    c[2] = up;
    vk_pc pe = {.u = {4, (uint32_t)(SK * F), (uint32_t)(SK * F)}};
    uint32_t gx, gy;
    grid1(SK * F, &gx, &gy);
    if (dispatch(r, LOOM_SPV_ELTWISE, NULL, c, &pe, gx, gy, 1) < 0) return -1;
    vk_arg e[VK_NBIND] = {0};
    e[1] = gate;
    e[3] = route;
    if (arg_of(x, n->src[4], false, &e[2]) < 0) return -1;
    if (mode == 3) { /* down per slot, then the weighted sum over each row's slots */
        vk_arg dn = scratch_at(r, dno, db, true);
        e[0] = dn;
        e[4] = grp;
        if (moe_tiles(r, wd, e, D, F, k, SK, ntile, true) < 0) return -1;
        vk_arg f[VK_NBIND] = {0};
        f[1] = dn, f[1].write = false;
        f[3] = route;
        if (arg_of(x, i, true, &f[0]) < 0) return -1;
        vk_pc ps = {.u = {(uint32_t)(S * D), (uint32_t)D, k}};
        grid1(S * D, &gx, &gy);
        return dispatch(r, LOOM_SPV_MOE_SUM, NULL, f, &ps, gx, gy, 1);
    }
    if (arg_of(x, i, true, &e[0]) < 0) return -1;
    vk_pc p3 = {.u = {(uint32_t)D, (uint32_t)F, k, (uint32_t)S, 1}};
    return dispatch(r, moe_shader(d, wd->type), NULL, e, &p3, (uint32_t)D, (uint32_t)S, 1);
}

static int rec_permute(vk_rec *r, const loom_exec_ctx *x, int i) {
    const loom_node *n = N(x, i), *s = N(x, n->src[0]);
    vk_arg a[VK_NBIND] = {0};
    if (arg_of(x, i, true, &a[0]) < 0 || arg_of(x, n->src[0], false, &a[1]) < 0) return -1;
    int nd = s->ndim;
    uint64_t stride[LOOM_MAX_DIMS], st = 1;
    for (int k = nd - 1; k >= 0; k--) {
        stride[k] = st;
        st *= (uint64_t)s->ne[k];
    }
    vk_pc pc = {0};
    for (int k = 0; k < 4; k++) { /* pad to 4 axes with leading size-1 axes */
        int dk = k - (4 - nd);
        pc.u[k] = dk < 0 ? 1 : (uint32_t)s->ne[n->ip[dk]];
        pc.u[4 + k] = dk < 0 ? 0 : (uint32_t)stride[n->ip[dk]];
    }
    uint64_t ne = (uint64_t)loom_node_nelem(n);
    pc.u[8] = (uint32_t)ne;
    uint32_t gx, gy;
    grid1(ne, &gx, &gy);
    return dispatch(r, LOOM_SPV_PERMUTE, NULL, a, &pc, gx, gy, 1);
}

_Static_assert(LOOM_OP_COUNT == 21, "a new op: record it in rec_node (or leave it to vk_supports to refuse)");
static int rec_node(vk_rec *r, const loom_exec_ctx *x, int i) {
    const loom_node *n = N(x, i);
    r->cur_node = i;
    if (n->flags & LOOM_NODE_FOLDED) return 0; /* computed by its readers (never in the order) */
    int rc;
    switch (n->op) {
    case LOOM_OP_INPUT:
    case LOOM_OP_WEIGHT:
    case LOOM_OP_STATE:
    case LOOM_OP_VIEW: return 0; /* leaves and aliases: nothing to compute */
    case LOOM_OP_EMBED: rc = rec_embed(r, x, i); break;
    case LOOM_OP_MATMUL: rc = rec_matmul(r, x, i, -1); break;
    case LOOM_OP_ADD: /* a folded GEMV source: that GEMV adds the other source as it writes */
        rc = folded(x, n->src[0]) ? rec_matmul(r, x, n->src[0], i)
             : folded(x, n->src[1]) ? rec_matmul(r, x, n->src[1], i) : rec_eltwise(r, x, i, 0);
        break;
    case LOOM_OP_MUL: rc = rec_eltwise(r, x, i, 1); break;
    case LOOM_OP_SCALE: rc = rec_eltwise(r, x, i, 2); break;
    case LOOM_OP_SILU: rc = rec_eltwise(r, x, i, 3); break;
    case LOOM_OP_SWIGLU: rc = rec_eltwise(r, x, i, 4); break;
    case LOOM_OP_GELU: rc = rec_eltwise(r, x, i, 6); break;
    case LOOM_OP_GEGLU: rc = rec_eltwise(r, x, i, 7); break;
    case LOOM_OP_SOFTCAP: rc = rec_eltwise(r, x, i, 8); break;
    case LOOM_OP_RMSNORM: rc = rec_rows(r, x, i, LOOM_SPV_RMSNORM); break;
    case LOOM_OP_SOFTMAX: rc = rec_rows(r, x, i, LOOM_SPV_SOFTMAX); break;
    case LOOM_OP_ROPE: rc = rec_rope(r, x, i); break;
    case LOOM_OP_KV_STORE: rc = rec_kv_store(r, x, i); break;
    case LOOM_OP_ATTENTION: rc = rec_attention(r, x, i); break;
    case LOOM_OP_PERMUTE: rc = rec_permute(r, x, i); break;
    case LOOM_OP_MOE: rc = rec_moe(r, x, i); break;
    default: return loom_err("vulkan: op %s is not supported", loom_op_name(n->op));
    }
    if (rc < 0) loom_err_prefix("vulkan: node %d (%s '%s')", i, loom_op_name(n->op), n->name);
    return rc;
}

static void rec_free(vk_rec *r) {
    free(r->rd);
    free(r->wr);
    r->rd = r->wr = NULL;
    r->n_rd = r->n_wr = r->cap_rd = r->cap_wr = 0;
}

/* ---- compute_node: one node, recorded and submitted on its own ----------------------------------- */

int vk_compute_node(vk_dev *d, const loom_exec_ctx *x, int node) {
    vk_rec r = {.d = d, .sizing = true, .k = -1};
    int rc = rec_node(&r, x, node);
    rec_free(&r);
    if (rc < 0) return -1;
    loom_buffer *scratch = NULL, *qbuf = NULL;
    size_t qreg = (r.qreg_need + 255) / 256 * 256; /* no epilogues outside a plan: no counters */
    if (r.scratch_need && !(scratch = vk_buf_alloc(d, r.scratch_need, false))) return -1;
    if (qreg && !(qbuf = vk_buf_alloc(d, 2 * qreg, false))) {
        vk_buf_free(d, scratch);
        return -1;
    }
    VkCommandBuffer cmd = vk_begin_once(d); /* waits for the previous one-shot submission */
    if (!cmd) {
        vk_buf_free(d, scratch);
        vk_buf_free(d, qbuf);
        return -1;
    }
    /* descriptor pools of this call only: a chunked matmul can take many sets */
    r = (vk_rec){.d = d, .cmd = cmd, .scratch = scratch, .qbuf = qbuf, .qreg = qreg, .qdata = qreg, .k = -1};
    rc = rec_node(&r, x, node);
    rec_free(&r);
    if (rc < 0) vkEndCommandBuffer(cmd);
    else rc = vk_submit(d, cmd, true);
    if (rc < 0) vk_wait(d);
    for (int k = 0; k < r.n_pools; k++) vkDestroyDescriptorPool(d->dev, r.pools[k], NULL);
    free(r.pools);
    vk_buf_free(d, scratch);
    vk_buf_free(d, qbuf);
    return rc;
}

/* ---- plans ------------------------------------------------------------------------------------- */

static uint64_t fingerprint(const loom_exec_ctx *x) {
    XXH64_state_t *st = XXH64_createState();
    if (!st) return 0;
    XXH64_reset(st, 0x6c6f6f6d);
    uint64_t v = x->arena ? x->arena->serial : 0;
    XXH64_update(st, &v, sizeof v);
    for (int i = 0; i < x->n_state; i++) {
        v = x->state[i] ? x->state[i]->serial : 0;
        XXH64_update(st, &v, sizeof v);
    }
    for (int i = 0; i < x->n_weights; i++) {
        v = x->weights[i] ? x->weights[i]->serial : 0;
        XXH64_update(st, &v, sizeof v);
    }
    for (int i = 0; i < x->n_computed; i++) {
        v = x->computed[i] ? x->computed[i]->serial : 0;
        XXH64_update(st, &v, sizeof v);
    }
    uint64_t h = XXH64_digest(st);
    XXH64_freeState(st);
    return h;
}

static void plan_clear(vk_dev *d, vk_plan *vp) {
    vk_wait(d);
    for (int k = 0; k < 2; k++)
        if (vp->cmd[k]) vkFreeCommandBuffers(d->dev, d->cmdpool, 1, &vp->cmd[k]);
    for (int k = 0; k < vp->n_pools; k++) vkDestroyDescriptorPool(d->dev, vp->pools[k], NULL);
    free(vp->pools);
    vk_buf_free(d, vp->scratch);
    vk_buf_free(d, vp->qbuf);
    if (vp->qp) vkDestroyQueryPool(d->dev, vp->qp, NULL);
    free(vp->q_node);
    memset(vp, 0, sizeof *vp);
}

static int plan_record(vk_dev *d, vk_plan *vp, const loom_exec_ctx *x, bool timed) {
    const loom_plan *p = x->plan;
    VkResult res;
    if (!vp->cmd[timed]) {
        VkCommandBufferAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                          .commandPool = d->cmdpool,
                                          .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                                          .commandBufferCount = 1};
        if ((res = vkAllocateCommandBuffers(d->dev, &ai, &vp->cmd[timed])) != VK_SUCCESS)
            return loom_err("vulkan: vkAllocateCommandBuffers failed: %s", vk_result_str(res));
    }
    if (timed && !vp->qp) {
        VkQueryPoolCreateInfo qi = {.sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
                                    .queryType = VK_QUERY_TYPE_TIMESTAMP,
                                    .queryCount = (uint32_t)vp->n_dispatch + 1};
        if ((res = vkCreateQueryPool(d->dev, &qi, NULL, &vp->qp)) != VK_SUCCESS)
            return loom_err("vulkan: vkCreateQueryPool failed: %s", vk_result_str(res));
        vp->q_node = loom_calloc((size_t)vp->n_dispatch + 1, sizeof *vp->q_node);
        if (!vp->q_node) return -1;
    }
    vk_rec r = {.d = d, .cmd = vp->cmd[timed], .pools = vp->pools, .n_pools = vp->n_pools,
                .scratch = vp->scratch, .qbuf = vp->qbuf, .qreg = vp->qreg, .qdata = vp->qdata, .qcnt = vp->qcnt,
                .qx_fold = vp->qx_fold, .acomb = vp->acomb};
    if (timed) {
        r.qp = vp->qp;
        r.q_node = vp->q_node;
    }
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
    if ((res = vkBeginCommandBuffer(r.cmd, &bi)) != VK_SUCCESS)
        return loom_err("vulkan: vkBeginCommandBuffer failed: %s", vk_result_str(res));
    vk_barrier_all(r.cmd);
    if (timed) {
        vkCmdResetQueryPool(r.cmd, vp->qp, 0, (uint32_t)vp->n_dispatch + 1);
        vkCmdWriteTimestamp(r.cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, vp->qp, 0);
    }
    int rc = 0;
    for (int k = 0; k < p->n_order && rc == 0; k++) r.k = k, rc = rec_node(&r, x, p->order[k]);
    vp->pools = r.pools;
    vp->n_pools = r.n_pools;
    rec_free(&r);
    res = vkEndCommandBuffer(r.cmd);
    if (rc < 0) return -1;
    if (res != VK_SUCCESS) return loom_err("vulkan: vkEndCommandBuffer failed: %s", vk_result_str(res));
    if (r.n_dispatch != vp->n_dispatch) return loom_err("vulkan: internal: plan recorded %d dispatches, sized %d",
                                                        r.n_dispatch, vp->n_dispatch);
    vp->recorded[timed] = true;
    if (!timed) vp->n_barrier = r.n_barrier, vp->n_qfold = r.n_qfold;
    return 0;
}

/* Size (dispatches, scratch) and record the plain command buffer. */
static int plan_build(vk_dev *d, vk_plan *vp, const loom_exec_ctx *x) {
    const loom_plan *p = x->plan;
    /* LOOM_VK_QX_FOLD=0: every 8-bit x of a dp GEMV by its own quantx.comp dispatch (the code before
     * session 11); else its producer writes it in its epilogue where it can (qx_reader) */
    const char *qf = getenv("LOOM_VK_QX_FOLD"), *ac = getenv("LOOM_VK_ACOMB");
    vp->qx_fold = !(qf && *qf == '0');
    vp->acomb = vp->qx_fold && !(ac && *ac == '0'); /* LOOM_VK_ACOMB=0: attn_combine.comp as before */
    vk_rec r = {.d = d, .sizing = true, .qx_fold = vp->qx_fold, .acomb = vp->acomb};
    int rc = 0;
    for (int k = 0; k < p->n_order && rc == 0; k++) r.k = k, rc = rec_node(&r, x, p->order[k]);
    rec_free(&r);
    if (rc < 0) return -1;
    vp->n_dispatch = r.n_dispatch;
    vp->n_barrier = r.n_barrier;
    if (r.scratch_need && !(vp->scratch = vk_buf_alloc(d, r.scratch_need, false))) return -1;
    vp->qdata = (r.qreg_need + 255) / 256 * 256;
    vp->qcnt = r.qcnt_need;
    vp->qreg = qreg_of(vp->qdata, vp->qcnt);
    if (vp->qreg && !(vp->qbuf = vk_buf_alloc(d, 2 * vp->qreg, false))) return -1;
    /* the epilogues' block counters start at 0, and each epilogue leaves them at 0 */
    for (int k = 0; k < 2 && vp->qcnt; k++)
        if (vk_buf_zero(d, vp->qbuf, k * vp->qreg + vp->qdata, 4 * vp->qcnt) < 0) return -1;
    vp->fp = fingerprint(x);
    if (plan_record(d, vp, x, false) < 0) return -1;
    if (d->verbose)
        fprintf(stderr,
                "loom: vulkan: recorded %d nodes as %d dispatches with %d barriers (%d producers folded by %s; %d x "
                "quantisations in their producer's epilogue)\n",
                p->n_order, vp->n_dispatch, vp->n_barrier, p->n_folded, p->pass ? p->pass : "no pass", vp->n_qfold);
    return 0;
}

int vk_plan_prepare(vk_dev *d, loom_plan *p, const loom_exec_ctx *x) {
    if (p->backend_data) vk_plan_release(d, p);
    vk_plan *vp = loom_calloc(1, sizeof *vp);
    if (!vp) return -1;
    loom_exec_ctx xx = *x;
    xx.plan = p;
    if (plan_build(d, vp, &xx) < 0) {
        plan_clear(d, vp);
        free(vp);
        return -1;
    }
    p->backend_data = vp;
    return 0;
}

void vk_plan_release(vk_dev *d, loom_plan *p) {
    vk_plan *vp = p->backend_data;
    if (!vp) return;
    plan_clear(d, vp);
    free(vp);
    p->backend_data = NULL;
}

int vk_compute_plan(vk_dev *d, const loom_exec_ctx *x) {
    loom_plan *p = (loom_plan *)x->plan; /* backend_data is ours to fill */
    vk_plan *vp = p->backend_data;
    if (!vp) {
        if (vk_plan_prepare(d, p, x) < 0) return -1;
        vp = p->backend_data;
    } else if (vp->fp != fingerprint(x)) { /* the session swapped a buffer: record again */
        plan_clear(d, vp);
        if (plan_build(d, vp, x) < 0) {
            plan_clear(d, vp);
            return -1;
        }
    }
    bool timed = x->node_time && d->timestamps;
    if (!vp->recorded[timed] && plan_record(d, vp, x, timed) < 0) return -1;
    if (vk_submit(d, vp->cmd[timed], timed) < 0) return -1;
    if (x->node_time) {
        for (int k = 0; k < p->n_order; k++) x->node_time[p->order[k]] = 0;
        if (!timed) return 0;
        uint32_t nq = (uint32_t)vp->n_dispatch + 1;
        uint64_t *ts = loom_malloc(nq * sizeof *ts);
        if (!ts) return -1;
        VkResult res = vkGetQueryPoolResults(d->dev, vp->qp, 0, nq, nq * sizeof *ts, ts, sizeof *ts,
                                             VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT);
        if (res != VK_SUCCESS) {
            free(ts);
            return loom_err("vulkan: reading timestamps failed: %s", vk_result_str(res));
        }
        double period = d->props.limits.timestampPeriod * 1e-9;
        for (int k = 0; k < vp->n_dispatch; k++)
            x->node_time[vp->q_node[k]] += (double)(ts[k + 1] - ts[k]) * period;
        free(ts);
    }
    return 0;
}

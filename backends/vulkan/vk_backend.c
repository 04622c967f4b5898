/* The Vulkan backend's loom_backend_ops, what it supports, and device listing. */
#include "backends/vulkan/vk_internal.h"

#include "core/qblock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static vk_dev *D(loom_backend *be) { return be->impl; }

static void vb_destroy(loom_backend *be) {
    if (!be) return;
    vk_dev_close(D(be));
    free(be);
}

static loom_buffer *vb_alloc(loom_backend *be, size_t n) { return vk_buf_alloc(D(be), n, false); }
static void vb_free(loom_backend *be, loom_buffer *b) { vk_buf_free(D(be), b); }
static int vb_write(loom_backend *be, loom_buffer *b, size_t off, const void *src, size_t n) {
    return vk_buf_write(D(be), b, off, src, n);
}
static int vb_read(loom_backend *be, loom_buffer *b, size_t off, void *dst, size_t n) {
    return vk_buf_read(D(be), b, off, dst, n);
}
static int vb_zero(loom_backend *be, loom_buffer *b, size_t off, size_t n) { return vk_buf_zero(D(be), b, off, n); }
static int vb_copy(loom_backend *be, loom_buffer *dst, size_t doff, loom_buffer *src, size_t soff, size_t n) {
    return vk_buf_copy(D(be), dst, doff, src, soff, n);
}

static loom_buffer *vb_from_host(loom_backend *be, const void *host, size_t n) {
    loom_buffer *b = vk_buf_alloc(D(be), n, true);
    if (!b) return NULL;
    if (vk_buf_write(D(be), b, 0, host, n) < 0) {
        vk_buf_free(D(be), b);
        return NULL;
    }
    return b;
}

static bool vb_supports(loom_backend *be, const loom_graph *g, int i) { return vk_supports(D(be), g, i); }
/* storage-buffer descriptors bind at multiples of minStorageBufferOffsetAlignment */
static size_t vb_alignment(loom_backend *be) { return D(be)->align; }
static int vb_prepare(loom_backend *be, loom_plan *p, const loom_exec_ctx *x) {
    return vk_plan_prepare(D(be), p, x);
}
static void vb_release(loom_backend *be, loom_plan *p) { vk_plan_release(D(be), p); }
static const loom_plan_pass *vb_pass(loom_backend *be) { return vk_fuse_pass(D(be)); }
static int vb_node(loom_backend *be, const loom_exec_ctx *x, int i) { return vk_compute_node(D(be), x, i); }
static int vb_plan(loom_backend *be, const loom_exec_ctx *x) { return vk_compute_plan(D(be), x); }
static int vb_sync(loom_backend *be) { return vk_wait(D(be)); }

static void vb_describe(loom_backend *be, char *buf, size_t n) {
    vk_dev *d = D(be);
    uint32_t v = d->props.apiVersion;
    /* "coopmat" here is what tests look for to know the prefill matmul rounds x to f16, "gemv dp8"
     * that the decode GEMVs round x to 8 bits, "attn-cm" that prefill attention takes attn_cm.comp
     * (f16 q, K, V, p), with the number of its dispatches recorded so far once there are any;
     * "ksplit N" a forced LOOM_VK_CM_KSPLIT */
    char acm[48] = "", ks[24] = "";
    if (d->attn_cm && d->n_attn_cm)
        snprintf(acm, sizeof acm, ", attn-cm (%llu recorded)", (unsigned long long)d->n_attn_cm);
    else if (d->attn_cm)
        snprintf(acm, sizeof acm, ", attn-cm");
    if (d->ksplit) snprintf(ks, sizeof ks, ", ksplit %u", d->ksplit);
    snprintf(buf, n, "%s (%s, Vulkan %u.%u.%u, %.1f GiB, subgroup %u%s%s%s%s%s%s%s%s%s)", d->name,
             vk_type_str(d->props.deviceType), VK_API_VERSION_MAJOR(v), VK_API_VERSION_MINOR(v), VK_API_VERSION_PATCH(v),
             (double)d->mem.memoryHeaps[d->heap_device].size / (1024.0 * 1024.0 * 1024.0), d->subgroup_size,
             d->coopmat ? ", coopmat" : "", d->coopmat && d->cm_variant ? " " : "",
             d->coopmat && d->cm_variant ? vk_cm_variant_name(d->cm_variant) : "", d->cm2 ? ", coopmat2 " : "",
             d->cm2 ? vk_cm2_name(d) : "", d->cm_qtile ? ", qtile" : "",
             d->gemv_dp || d->gemv_dp_default ? ", gemv dp8" : "", ks, acm);
}

static const loom_backend_ops vk_ops = {
    .name = "vulkan",
    .destroy = vb_destroy,
    .buf_alloc = vb_alloc,
    .buf_free = vb_free,
    .buf_write = vb_write,
    .buf_read = vb_read,
    .buf_zero = vb_zero,
    .buf_copy = vb_copy,
    .buf_from_host = vb_from_host,
    .alignment = vb_alignment,
    .plan_pass = vb_pass,
    .supports = vb_supports,
    .plan_prepare = vb_prepare,
    .plan_release = vb_release,
    .compute_node = vb_node,
    .compute_plan = vb_plan,
    .sync = vb_sync,
    .describe = vb_describe,
};

loom_backend *loom_vulkan_backend_new(const loom_backend_opts *o) {
    vk_dev *d = vk_dev_open(o);
    if (!d) return NULL;
    loom_backend *be = loom_calloc(1, sizeof *be);
    if (!be) {
        vk_dev_close(d);
        return NULL;
    }
    be->ops = &vk_ops;
    be->impl = d;
    return be;
}

/* ---- what the shaders handle ------------------------------------------------------------------ */

static bool is_f32(const loom_graph *g, int i) { return i >= 0 && i < g->n && g->nodes[i].type == LOOM_F32; }
static bool is_i32(const loom_graph *g, int i) { return i >= 0 && i < g->n && g->nodes[i].type == LOOM_I32; }
/* A weight matrix the EMBED/MATMUL shaders read: f32/f16/bf16, or ggml blocks (any loom quantised type,
 * shaders/wquant.glsl) whose rows are whole blocks. */
static bool is_w(const loom_graph *g, int i) {
    if (i < 0 || i >= g->n) return false;
    const loom_node *n = &g->nodes[i];
    if (loom_dtype_is_quant(n->type)) return n->ndim == 2 && n->ne[1] % loom_dtype_blck(n->type) == 0;
    return n->type == LOOM_F32 || n->type == LOOM_F16 || n->type == LOOM_BF16;
}
static int64_t nel(const loom_graph *g, int i) { return loom_node_nelem(&g->nodes[i]); }
static bool has_src(const loom_node *n, int k) { return n->n_src > k && n->src[k] >= 0; }

_Static_assert(LOOM_OP_COUNT == 21, "a new op: say in vk_supports whether Vulkan runs it");
bool vk_supports(vk_dev *d, const loom_graph *g, int i) {
    if (i < 0 || i >= g->n) return false;
    const loom_node *n = &g->nodes[i];
    switch (n->op) {
    case LOOM_OP_INPUT:
    case LOOM_OP_WEIGHT:
    case LOOM_OP_STATE:
    case LOOM_OP_VIEW: return true;
    default: break;
    }
    if (!loom_params_check(n, "vulkan", 0, 0)) return false; /* every parameter graph.h defines is implemented */
    /* every computed tensor is f32 and must fit one storage binding; indices are 32-bit */
    if (n->type != LOOM_F32 || loom_node_bytes(n) > d->max_range - d->align) return false;
    for (int k = 0; k < n->n_src; k++) {
        int s = n->src[k];
        if (s < 0) continue;
        if (s >= g->n) return false;
        const loom_node *sn = &g->nodes[s];
        bool chunked = (n->op == LOOM_OP_MATMUL && k == 1) || (n->op == LOOM_OP_EMBED && k == 0);
        if (!chunked && loom_node_bytes(sn) > d->max_range - d->align) return false;
        if (chunked && (uint64_t)nel(g, s) > 0xffffffffull) return false;
    }
    switch (n->op) {
    case LOOM_OP_EMBED:
        return is_w(g, n->src[0]) && g->nodes[n->src[0]].ndim == 2 && is_i32(g, n->src[1]);
    case LOOM_OP_MATMUL: {
        if (!is_f32(g, n->src[0]) || !is_w(g, n->src[1]) || g->nodes[n->src[1]].ndim != 2) return false;
        int64_t K = g->nodes[n->src[1]].ne[1];
        if (K <= 0 || nel(g, n->src[0]) % K) return false;
        return !has_src(n, 2) || is_f32(g, n->src[2]);
    }
    case LOOM_OP_ADD:
    case LOOM_OP_MUL: {
        if (!is_f32(g, n->src[0]) || !is_f32(g, n->src[1])) return false;
        int64_t a = nel(g, n->src[0]), b = nel(g, n->src[1]);
        return b > 0 && a % b == 0;
    }
    case LOOM_OP_SCALE:
    case LOOM_OP_GELU:
    case LOOM_OP_SILU: return is_f32(g, n->src[0]);
    case LOOM_OP_SOFTCAP: return is_f32(g, n->src[0]) && n->fp[0] > 0;
    case LOOM_OP_SWIGLU:
    case LOOM_OP_GEGLU:
        return is_f32(g, n->src[0]) && is_f32(g, n->src[1]) && nel(g, n->src[0]) == nel(g, n->src[1]);
    case LOOM_OP_RMSNORM:
        return is_f32(g, n->src[0]) && (!has_src(n, 1) || is_f32(g, n->src[1]));
    case LOOM_OP_SOFTMAX: return is_f32(g, n->src[0]);
    case LOOM_OP_ROPE: {
        int H = n->ip[0], hd = n->ip[1], rot = n->ip[3];
        if (H <= 0 || hd <= 0 || rot < 0 || rot > hd || rot % 2 || (n->ip[2] != LOOM_ROPE_NEOX && n->ip[2] != LOOM_ROPE_NORM))
            return false;
        if (nel(g, n->src[0]) % ((int64_t)H * hd)) return false;
        return is_f32(g, n->src[0]) && is_i32(g, n->src[1]) && (!has_src(n, 2) || is_f32(g, n->src[2]));
    }
    case LOOM_OP_KV_STORE:
        return is_f32(g, n->src[0]) && is_f32(g, n->src[1]) && is_i32(g, n->src[2]) &&
               g->nodes[n->src[0]].ndim == 2;
    case LOOM_OP_ATTENTION: {
        int H = n->ip[0], Hkv = n->ip[1], hd = n->ip[2];
        if (H <= 0 || Hkv <= 0 || H % Hkv || hd <= 0 || hd > 256 || n->ip[4] < 0 || !(n->fp[1] >= 0)) return false;
        if (n->ip[5] && (n->ip[5] != 1 || n->ip[4] <= 0 || n->ip[4] > g->nodes[n->src[1]].ne[0] || n->n_src > 4))
            return false;
        if (n->n_src > 4 && (!is_i32(g, n->src[4]) || !is_i32(g, n->src[5]) || n->ip[3] <= 0 ||
                             g->nodes[n->src[5]].ndim != 2))
            return false;
        return is_f32(g, n->src[0]) && is_f32(g, n->src[1]) && is_f32(g, n->src[2]) && is_i32(g, n->src[3]);
    }
    case LOOM_OP_MOE: {
        if (n->n_src != 5 || !is_f32(g, n->src[0]) || !is_f32(g, n->src[1])) return false;
        int64_t E = g->nodes[n->src[1]].ne[g->nodes[n->src[1]].ndim - 1];
        for (int k = 2; k < 5; k++) {
            const loom_node *w = &g->nodes[n->src[k]];
            /* the MOE shaders (vk_record.c rec_moe) read f32/f16/bf16 stacks and block-quantised ones whose
             * rows are whole blocks */
            bool wt = loom_dtype_is_quant(w->type) ? w->ne[2] % loom_dtype_blck(w->type) == 0
                                                   : w->type == LOOM_F32 || w->type == LOOM_F16 || w->type == LOOM_BF16;
            if (w->ndim != 3 || w->ne[0] != E || !wt) return false;
            if (loom_node_bytes(w) > d->piece) { /* one binding reads the whole stack */
                loom_err("vulkan: moe '%s': expert stack '%s' (%zu bytes) is larger than one device allocation "
                         "(%zu bytes)", n->name, w->name, loom_node_bytes(w), d->piece);
                return false;
            }
        }
        if (n->ip[0] > 32) {
            loom_err("vulkan: moe '%s': %d experts per token (moe_route.comp takes at most 32)", n->name, n->ip[0]);
            return false;
        }
        return n->ip[0] >= 1 && n->ip[0] <= E && (n->ip[1] == 0 || n->ip[1] == 1);
    }
    case LOOM_OP_PERMUTE: {
        const loom_node *s = &g->nodes[n->src[0]];
        if (!is_f32(g, n->src[0]) || s->ndim > 4 || s->ndim != n->ndim) return false;
        for (int k = 0; k < s->ndim; k++)
            if (n->ip[k] < 0 || n->ip[k] >= s->ndim) return false;
        return true;
    }
    default: return false;
    }
}

/* ---- listing ----------------------------------------------------------------------------------- */

bool loom_vulkan_has_gpu(void) {
    VkInstance inst = vk_instance_new(true);
    if (!inst) return false;
    uint32_t n = 0;
    bool gpu = false;
    if (vkEnumeratePhysicalDevices(inst, &n, NULL) == VK_SUCCESS && n) {
        VkPhysicalDevice *pd = calloc(n, sizeof *pd);
        if (pd && vkEnumeratePhysicalDevices(inst, &n, pd) >= 0)
            for (uint32_t i = 0; i < n; i++) {
                VkPhysicalDeviceProperties p;
                vkGetPhysicalDeviceProperties(pd[i], &p);
                bool v12 = VK_API_VERSION_MAJOR(p.apiVersion) > 1 || VK_API_VERSION_MINOR(p.apiVersion) >= 2;
                if (p.deviceType != VK_PHYSICAL_DEVICE_TYPE_CPU && v12) gpu = true;
            }
        free(pd);
    }
    vkDestroyInstance(inst, NULL);
    loom_err_clear();
    return gpu;
}

int loom_vulkan_list_devices(FILE *f) {
    VkInstance inst = vk_instance_new(true);
    if (!inst) return -1;
    uint32_t n = 0;
    VkResult r = vkEnumeratePhysicalDevices(inst, &n, NULL);
    VkPhysicalDevice *pd = n ? calloc(n, sizeof *pd) : NULL;
    if (r != VK_SUCCESS || (n && (!pd || vkEnumeratePhysicalDevices(inst, &n, pd) < 0))) {
        free(pd);
        vkDestroyInstance(inst, NULL);
        return loom_err("vulkan: enumerating devices failed: %s", vk_result_str(r));
    }
    for (uint32_t i = 0; i < n; i++) {
        VkPhysicalDeviceSubgroupProperties sg = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
        VkPhysicalDeviceMaintenance3Properties m3 = {
            .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES, .pNext = &sg};
        VkPhysicalDeviceDriverProperties drv = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES,
                                                .pNext = &m3};
        VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &drv};
        vkGetPhysicalDeviceProperties2(pd[i], &p2);
        const VkPhysicalDeviceProperties *p = &p2.properties;
        VkPhysicalDeviceVulkan12Features f12 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
        VkPhysicalDeviceVulkan11Features f11 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES,
                                                .pNext = &f12};
        VkPhysicalDeviceFeatures2 f2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &f11};
        bool v12 = VK_API_VERSION_MAJOR(p->apiVersion) > 1 || VK_API_VERSION_MINOR(p->apiVersion) >= 2;
        if (v12) vkGetPhysicalDeviceFeatures2(pd[i], &f2);
        VkPhysicalDeviceMemoryProperties mp;
        vkGetPhysicalDeviceMemoryProperties(pd[i], &mp);
        fprintf(f, "vulkan:%u  %s\n", i, p->deviceName);
        fprintf(f, "    type        %s%s\n", vk_type_str(p->deviceType),
                p->deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU ? " (software; `auto` does not pick it)" : "");
        fprintf(f, "    api         Vulkan %u.%u.%u%s\n", VK_API_VERSION_MAJOR(p->apiVersion),
                VK_API_VERSION_MINOR(p->apiVersion), VK_API_VERSION_PATCH(p->apiVersion),
                v12 ? "" : " (too old: loom needs 1.2)");
        if (v12) fprintf(f, "    driver      %s %s\n", drv.driverName, drv.driverInfo);
        for (uint32_t h = 0; h < mp.memoryHeapCount; h++)
            fprintf(f, "    heap %u      %.1f GiB%s\n", h, (double)mp.memoryHeaps[h].size / (1024.0 * 1024.0 * 1024.0),
                    (mp.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) ? " device-local" : "");
        bool arith = (sg.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
                     (sg.supportedOperations & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT);
        fprintf(f, "    subgroup    %u%s\n", sg.subgroupSize,
                arith ? " (arithmetic: subgroup GEMV)" : " (no arithmetic: tiled matmul for decode)");
        fprintf(f, "    limits      max allocation %.0f MiB, max storage binding %.0f MiB, shared %u KiB\n",
                (double)m3.maxMemoryAllocationSize / (1024.0 * 1024.0),
                (double)p->limits.maxStorageBufferRange / (1024.0 * 1024.0),
                p->limits.maxComputeSharedMemorySize / 1024);
        fprintf(f, "    features    f16 weights via %s, bf16 via uint unpack, timestamps %s\n",
                (f11.storageBuffer16BitAccess && f12.shaderFloat16) ? "16-bit storage" : "uint unpack",
                p->limits.timestampComputeAndGraphics ? "yes" : "queue-dependent");
        fprintf(f, "    features    integer dot product: %s\n",
                v12 && vk_idot_query(pd[i]) ? "yes (decode GEMVs on 8-bit x by default on a GPU; LOOM_VK_GEMV_Q)" : "no");
        char cm[160] = "no";
        if (v12 && vk_coopmat_query(inst, pd[i], cm, sizeof cm))
#ifdef LOOM_VK_COOPMAT
            fprintf(f, "    features    cooperative matrix: yes (%s; prefill matmul of f16/bf16 weights)\n", cm);
#else
            fprintf(f, "    features    cooperative matrix: yes (%s; unused: built without coopmat shaders)\n", cm);
#endif
        else
            fprintf(f, "    features    cooperative matrix: %s\n", cm);
        char cm2[320] = "no";
        bool has2 = v12 && vk_cm2_query(inst, pd[i], NULL, cm2, sizeof cm2);
        fprintf(f, "    features    cooperative matrix 2: %s%s\n", cm2,
#ifdef LOOM_VK_CM2
                has2 ? " (LOOM_VK_CM2=1: prefill matmul)" : ""
#else
                has2 ? " (unused: built without coopmat2 shaders)" : ""
#endif
        );
    }
    free(pd);
    vkDestroyInstance(inst, NULL);
    return (int)n;
}

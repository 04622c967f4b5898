/* VK_NV_cooperative_matrix2 prefill matmul (LOOM_VK_CM2; shaders/matmul_cm2.comp): the device
 * query, the knob, and the table of tile variants. vk_record.c's rec_matmul_cm2 records it. */
#include "backends/vulkan/vk_internal.h"
#include "core/qblock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool vk_cm2_query(VkInstance inst, VkPhysicalDevice p, vk_cm2_caps *caps, char *desc, size_t n) {
    vk_cm2_caps c0;
    char dummy[8];
    if (!caps) caps = &c0;
    if (!desc) desc = dummy, n = sizeof dummy;
    memset(caps, 0, sizeof *caps);
    snprintf(desc, n, "no");
    VkPhysicalDeviceProperties pr;
    vkGetPhysicalDeviceProperties(p, &pr);
    if (!vk_dev_has_ext(p, VK_NV_COOPERATIVE_MATRIX_2_EXTENSION_NAME)) {
        snprintf(desc, n, "no (no %s)", VK_NV_COOPERATIVE_MATRIX_2_EXTENSION_NAME);
        return false;
    }
    if (VK_API_VERSION_MAJOR(pr.apiVersion) == 1 && VK_API_VERSION_MINOR(pr.apiVersion) < 3) {
        snprintf(desc, n, "no (Vulkan %u.%u: its shaders are SPIR-V 1.6, which needs 1.3)",
                 VK_API_VERSION_MAJOR(pr.apiVersion), VK_API_VERSION_MINOR(pr.apiVersion));
        return false;
    }
    caps->f = (VkPhysicalDeviceCooperativeMatrix2FeaturesNV){
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_2_FEATURES_NV};
    VkPhysicalDeviceVulkan12Features f12 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES,
                                            .pNext = &caps->f};
    VkPhysicalDeviceVulkan11Features f11 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES,
                                            .pNext = &f12};
    VkPhysicalDeviceFeatures2 f2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &f11};
    vkGetPhysicalDeviceFeatures2(p, &f2);
    caps->f.pNext = NULL;
    caps->p = (VkPhysicalDeviceCooperativeMatrix2PropertiesNV){
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_2_PROPERTIES_NV};
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &caps->p};
    vkGetPhysicalDeviceProperties2(p, &p2);
    caps->p.pNext = NULL;
    const VkPhysicalDeviceCooperativeMatrix2FeaturesNV *f = &caps->f;
    const char *miss = !f->cooperativeMatrixWorkgroupScope ? "cooperativeMatrixWorkgroupScope"
                       : !f->cooperativeMatrixFlexibleDimensions ? "cooperativeMatrixFlexibleDimensions"
                       : !f->cooperativeMatrixTensorAddressing   ? "cooperativeMatrixTensorAddressing"
                       : !f->cooperativeMatrixBlockLoads         ? "cooperativeMatrixBlockLoads"
                       : !f->cooperativeMatrixPerElementOperations ? "cooperativeMatrixPerElementOperations"
                       : !f11.storageBuffer16BitAccess             ? "storageBuffer16BitAccess"
                       : !f12.shaderFloat16                        ? "shaderFloat16"
                       : !f12.vulkanMemoryModel                    ? "vulkanMemoryModel"
                       : !f12.bufferDeviceAddress                  ? "bufferDeviceAddress"
                                                                   : NULL;
    PFN_vkGetPhysicalDeviceCooperativeMatrixFlexibleDimensionsPropertiesNV get =
        (PFN_vkGetPhysicalDeviceCooperativeMatrixFlexibleDimensionsPropertiesNV)vkGetInstanceProcAddr(
            inst, "vkGetPhysicalDeviceCooperativeMatrixFlexibleDimensionsPropertiesNV");
    uint32_t np = 0;
    VkCooperativeMatrixFlexibleDimensionsPropertiesNV *fp = NULL;
    if (get && get(p, &np, NULL) == VK_SUCCESS && np && (fp = calloc(np, sizeof *fp))) {
        for (uint32_t i = 0; i < np; i++) fp[i].sType = VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_FLEXIBLE_DIMENSIONS_PROPERTIES_NV;
        if (get(p, &np, fp) < 0) np = 0;
        for (uint32_t i = 0; i < np; i++) {
            const VkCooperativeMatrixFlexibleDimensionsPropertiesNV *c = &fp[i];
            /* f16 x f16 + f32 -> f32 at workgroup scope (VK_SCOPE_WORKGROUP_KHR = 2) */
            if (c->AType != 0 || c->BType != 0 || c->CType != 1 || c->ResultType != 1 || c->scope != 2 ||
                c->saturatingAccumulation)
                continue;
            if (!caps->gm) caps->gm = c->MGranularity, caps->gn = c->NGranularity, caps->gk = c->KGranularity;
            if (c->workgroupInvocations && c->workgroupInvocations < (1u << 31) &&
                !(c->workgroupInvocations & (c->workgroupInvocations - 1)))
                for (uint32_t b = 0; b < 31; b++)
                    if (c->workgroupInvocations == 1u << b) caps->wg_mask |= 1u << b;
        }
    }
    free(fp);
    if (miss) {
        snprintf(desc, n, "no (extension without %s)", miss);
        return false;
    }
    if (!caps->gm || !caps->wg_mask) {
        snprintf(desc, n, "no (no f16 x f16 + f32 workgroup-scope shapes)");
        return false;
    }
    char wgs[64] = "";
    size_t l = 0;
    for (uint32_t b = 0; b < 31 && l < sizeof wgs; b++)
        if (caps->wg_mask & (1u << b)) l += (size_t)snprintf(wgs + l, sizeof wgs - l, "%s%u", l ? "/" : "", 1u << b);
    snprintf(desc, n,
             "yes (workgroup scope f16->f32, granularity %ux%ux%u, %s invocations, max dimension %u, "
             "%u B shared reserved; reductions %s, conversions %s)",
             caps->gm, caps->gn, caps->gk, wgs, caps->p.cooperativeMatrixFlexibleDimensionsMaxDimension,
             caps->p.cooperativeMatrixWorkgroupScopeReservedSharedMemory, f->cooperativeMatrixReductions ? "yes" : "no",
             f->cooperativeMatrixConversions ? "yes" : "no");
    caps->ok = true;
    return true;
}

/* ---- tile variants ------------------------------------------------------------------------- */

/* matmul_cm2.comp builds (vulkan.cmake): BM x BN output tile, BK of K a step, WG invocations; one
 * shader per weight type. The first is what LOOM_VK_CM2=1 takes. */
typedef struct {
    const char *name;
    uint32_t bm, bn, bk, wg;
    bool x32; /* x read as f32 and converted in the kernel (XF32), no tohalf.comp copy */
    loom_spv_id sh[LOOM_DTYPE_COUNT];
} vk_cm2_var;

#ifdef LOOM_VK_CM2
#define CM2T(V, T) [LOOM_##T] = LOOM_SPV_MATMUL_CM2_##V##_##T + 1
#define CM2(n, V, bm, bn, bk, wg, x32)                                                                   \
    {n, bm, bn, bk, wg, x32,                                                                             \
     {CM2T(V, F16), CM2T(V, BF16), CM2T(V, Q4_0), CM2T(V, Q8_0), CM2T(V, Q4_1), CM2T(V, Q5_0), CM2T(V, Q5_1), \
      CM2T(V, Q4_K), CM2T(V, Q5_K), CM2T(V, Q6_K)}}
#define CM2_BUILT true
#else /* a build whose glslang cannot compile them: the names still parse, the knob says why it is off */
#define CM2(n, V, bm, bn, bk, wg, x32) {n, bm, bn, bk, wg, x32, {0}}
#define CM2_BUILT false
#endif
/* sh[] holds id + 1 so that 0 means "no shader for this type" */
static const vk_cm2_var cm2_vars[] = {
    CM2("m128", M128, 128, 128, 32, 256, false), /* 128 x 128, K 32 a step, 256 invocations */
    CM2("n256", N256, 128, 256, 32, 256, false), /* 128 x 256 */
    CM2("k64", K64, 128, 128, 64, 256, false),   /* 128 x 128, K 64 a step */
    CM2("k16", K16, 128, 128, 16, 256, false),   /* K 16 a step (NVIDIA's coopmat sample's pick for f32 results) */
    CM2("w128", W128, 128, 128, 32, 128, false), /* 128 x 128, 128 invocations */
    CM2("m128x", M128X, 128, 128, 32, 256, true), /* m128 reading f32 x (no f16 copy) */
    CM2("n256x", N256X, 128, 256, 32, 256, true), /* n256 reading f32 x */
};
#undef CM2
#undef CM2T
#define N_CM2 (sizeof cm2_vars / sizeof cm2_vars[0])

const char *vk_cm2_name(const vk_dev *d) { return d->cm2 && d->cm2 <= N_CM2 ? cm2_vars[d->cm2 - 1].name : "off"; }

bool vk_cm2_pick(const vk_dev *d, loom_dtype t, uint32_t *bm, uint32_t *bn, bool *x32, loom_spv_id *sh) {
    if (!d->cm2 || d->cm2 > N_CM2 || (int)t < 0 || t >= LOOM_DTYPE_COUNT) return false;
    const vk_cm2_var *v = &cm2_vars[d->cm2 - 1];
    if (!v->sh[t] || (d->cm2_noq && loom_dtype_is_quant(t))) return false;
    *bm = v->bm;
    *bn = v->bn;
    *x32 = v->x32;
    *sh = (loom_spv_id)(v->sh[t] - 1);
    return true;
}

static bool wg_offered(uint32_t mask, uint32_t wg) {
    for (uint32_t b = 0; b < 31; b++)
        if (wg == 1u << b) return (mask >> b) & 1u;
    return false;
}

/* Whether variant v fits the device c describes: true, or false with why set. */
static bool fits(const vk_dev *d, const vk_cm2_caps *c, const vk_cm2_var *v, const char *desc, char *why, size_t n) {
    uint32_t mx = c->p.cooperativeMatrixFlexibleDimensionsMaxDimension;
    if (!wg_offered(c->wg_mask, v->wg) || v->bm % c->gm || v->bn % c->gn || v->bk % c->gk ||
        (mx && (v->bm > mx || v->bn > mx)))
        snprintf(why, n, "%s's %ux%ux%u tile on %u invocations does not fit it: %s", v->name, v->bm, v->bn, v->bk, v->wg,
                 desc);
    else if (v->x32 && !c->f.cooperativeMatrixConversions)
        snprintf(why, n, "%s converts f32 x in the kernel: no cooperativeMatrixConversions", v->name);
    else if (v->wg > c->p.cooperativeMatrixWorkgroupScopeMaxWorkgroupSize ||
             v->wg > d->props.limits.maxComputeWorkGroupInvocations)
        snprintf(why, n, "%s's %u invocations are over the device's limit", v->name, v->wg);
    else
        return true;
    return false;
}

int vk_cm2_setup(vk_dev *d, VkInstance inst, VkPhysicalDevice phys) {
    d->cm2 = 0;
    const char *e = getenv("LOOM_VK_CM2");
    if (!e || !*e || !strcmp(e, "0")) return 0;
    bool any = !strcmp(e, "1"); /* the first variant (f16 x) that fits the device */
    int v = any ? 0 : VK_KNOB_FIND(cm2_vars, N_CM2, e);
    if (v < 0) {
        char names[96] = "1";
        return loom_err("vulkan: LOOM_VK_CM2=%s is not one of %s", e, VK_KNOB_NAMES(names, cm2_vars, N_CM2));
    }
    uint32_t pick = (uint32_t)v + 1;
    char why[400], desc[320], why2[400];
    vk_cm2_caps c;
    if (!CM2_BUILT)
        snprintf(why, sizeof why, "this build has no matmul_cm2 shaders (its glslang cannot compile GL_NV_cooperative_matrix2)");
    else if (!vk_cm2_query(inst, phys, &c, desc, sizeof desc))
        snprintf(why, sizeof why, "%s", desc);
    else if (!d->coopmat) /* the KHR path's checks (and LOOM_VK_NO_COOPMAT / LOOM_VK_NO_SUBGROUP) */
        snprintf(why, sizeof why, "the VK_KHR_cooperative_matrix path is off or missing");
    else {
        bool ok = fits(d, &c, &cm2_vars[pick - 1], desc, why, sizeof why);
        for (uint32_t i = 1; !ok && any && i < N_CM2; i++)
            if (!cm2_vars[i].x32 && fits(d, &c, &cm2_vars[i], desc, why2, sizeof why2)) {
                fprintf(stderr, "loom: vulkan: LOOM_VK_CM2=1: %s; taking %s\n", why, cm2_vars[i].name);
                pick = i + 1;
                ok = true;
            }
        if (ok) {
            const vk_cm2_var *v = &cm2_vars[pick - 1];
            d->cm2 = pick;
            const char *q = getenv("LOOM_VK_CM2_QUANT");
            d->cm2_noq = q && !strcmp(q, "0");
            /* the features matmul_cm2.comp uses, for vkCreateDevice */
            d->cm2f = (VkPhysicalDeviceCooperativeMatrix2FeaturesNV){
                .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_2_FEATURES_NV,
                .cooperativeMatrixWorkgroupScope = VK_TRUE,
                .cooperativeMatrixFlexibleDimensions = VK_TRUE,
                .cooperativeMatrixPerElementOperations = VK_TRUE,
                .cooperativeMatrixTensorAddressing = VK_TRUE,
                .cooperativeMatrixBlockLoads = VK_TRUE,
                .cooperativeMatrixConversions = v->x32};
            return 0;
        }
    }
    fprintf(stderr, "loom: vulkan: LOOM_VK_CM2=%s: not on %s: %s; prefill matmuls stay on the %s path\n", e, d->name,
            why, d->coopmat ? "VK_KHR_cooperative_matrix" : "FMA");
    return 0;
}

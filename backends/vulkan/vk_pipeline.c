/* Pipelines: one descriptor-set layout and one pipeline layout shared by every shader (seven
 * storage buffers + 92 bytes of push constants), pipelines created on first use per
 * (shader, specialisation constants), and a VkPipelineCache persisted on disk so the driver's
 * compile happens once per device and shader build, not once per process.
 *
 * The cache file is $XDG_CACHE_HOME/loom (or ~/.cache/loom) /vk-<device uuid>-<xxh64 of all
 * SPIR-V>.bin: a new driver reuses the file only if it accepts its header, and a new build of
 * the shaders gets a new file. An unwritable folder only turns persistence off (one warning).
 */
#include "backends/vulkan/vk_internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

static bool cache_warned;

static void cache_warn(const char *what, const char *path) {
    if (cache_warned) return;
    cache_warned = true;
    fprintf(stderr, "loom: warning: vulkan pipeline cache disabled: cannot %s %s (%s)\n", what, path,
            strerror(errno));
}

/* mkdir -p for the cache folder */
static int make_dirs(char *path) {
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        int r = mkdir(path, 0755);
        *p = '/';
        if (r < 0 && errno != EEXIST) return -1;
    }
    if (mkdir(path, 0755) < 0 && errno != EEXIST) return -1;
    return 0;
}

static void cache_path(vk_dev *d) {
    d->cache_path[0] = 0;
    const char *env = getenv("LOOM_VK_NO_CACHE");
    if (env && *env && *env != '0') return;
    char dir[900];
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && *xdg) snprintf(dir, sizeof dir, "%s/loom", xdg);
    else if (home && *home) snprintf(dir, sizeof dir, "%s/.cache/loom", home);
    else return;
    XXH64_state_t *st = XXH64_createState();
    if (!st) return;
    XXH64_reset(st, 0);
    for (int i = 0; i < (int)LOOM_SPV_COUNT; i++) XXH64_update(st, loom_spirv_table[i].code, loom_spirv_table[i].size);
    uint64_t h = XXH64_digest(st);
    XXH64_freeState(st);
    char uuid[2 * VK_UUID_SIZE + 1];
    for (int i = 0; i < (int)VK_UUID_SIZE; i++) snprintf(uuid + 2 * i, 3, "%02x", d->uuid[i]);
    snprintf(d->cache_path, sizeof d->cache_path, "%s/vk-%s-%016llx.bin", dir, uuid, (unsigned long long)h);
}

static void cache_save(vk_dev *d) {
    if (!d->pcache || !d->cache_dirty || !d->cache_path[0]) return;
    d->cache_dirty = false;
    size_t n = 0;
    if (vkGetPipelineCacheData(d->dev, d->pcache, &n, NULL) != VK_SUCCESS || !n) return;
    void *buf = malloc(n);
    if (!buf) return;
    if (vkGetPipelineCacheData(d->dev, d->pcache, &n, buf) != VK_SUCCESS) {
        free(buf);
        return;
    }
    char dir[sizeof d->cache_path], tmp[sizeof d->cache_path + 32];
    snprintf(dir, sizeof dir, "%s", d->cache_path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    if (make_dirs(dir) < 0) {
        cache_warn("create", dir);
        free(buf);
        return;
    }
    /* write then rename, so a concurrent reader never sees half a file */
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", d->cache_path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        cache_warn("write", tmp);
        free(buf);
        return;
    }
    bool ok = fwrite(buf, 1, n, f) == n;
    ok = (fclose(f) == 0) && ok;
    free(buf);
    if (!ok || rename(tmp, d->cache_path) < 0) {
        cache_warn("write", d->cache_path);
        unlink(tmp);
        return;
    }
    /* files of this device from older shader builds are dead weight: remove them */
    const char *base = strrchr(d->cache_path, '/') + 1;
    size_t prefix = (size_t)(strrchr(base, '-') - base) + 1; /* "vk-<uuid>-" */
    DIR *dp = opendir(dir);
    if (!dp) return;
    struct dirent *e;
    while ((e = readdir(dp))) {
        size_t len = strlen(e->d_name);
        if (strncmp(e->d_name, base, prefix) || !strcmp(e->d_name, base) || len < 4 ||
            strcmp(e->d_name + len - 4, ".bin"))
            continue;
        char old[sizeof d->cache_path + 256];
        snprintf(old, sizeof old, "%s/%s", dir, e->d_name);
        unlink(old);
    }
    closedir(dp);
}

int vk_pipelines_init(vk_dev *d) {
    VkDescriptorSetLayoutBinding b[VK_NBIND];
    for (int i = 0; i < VK_NBIND; i++)
        b[i] = (VkDescriptorSetLayoutBinding){.binding = (uint32_t)i,
                                              .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                              .descriptorCount = 1,
                                              .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT};
    VkDescriptorSetLayoutCreateInfo li = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
                                          .bindingCount = VK_NBIND,
                                          .pBindings = b};
    VkResult r = vkCreateDescriptorSetLayout(d->dev, &li, NULL, &d->dsl);
    if (r != VK_SUCCESS) return loom_err("vkCreateDescriptorSetLayout failed: %s", vk_result_str(r));
    VkPushConstantRange pcr = {.stageFlags = VK_SHADER_STAGE_COMPUTE_BIT, .size = VK_PC_WORDS * 4};
    VkPipelineLayoutCreateInfo pli = {.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
                                      .setLayoutCount = 1,
                                      .pSetLayouts = &d->dsl,
                                      .pushConstantRangeCount = 1,
                                      .pPushConstantRanges = &pcr};
    r = vkCreatePipelineLayout(d->dev, &pli, NULL, &d->layout);
    if (r != VK_SUCCESS) return loom_err("vkCreatePipelineLayout failed: %s", vk_result_str(r));


    cache_path(d);
    void *data = NULL;
    size_t n = 0;
    if (d->cache_path[0]) {
        FILE *f = fopen(d->cache_path, "rb");
        if (f) {
            if (fseek(f, 0, SEEK_END) == 0) {
                long len = ftell(f);
                if (len > 0 && fseek(f, 0, SEEK_SET) == 0 && (data = malloc((size_t)len))) {
                    n = fread(data, 1, (size_t)len, f);
                    if (n != (size_t)len) n = 0;
                }
            }
            fclose(f);
        }
    }
    VkPipelineCacheCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO,
                                    .initialDataSize = n,
                                    .pInitialData = n ? data : NULL};
    r = vkCreatePipelineCache(d->dev, &ci, NULL, &d->pcache);
    if (r != VK_SUCCESS && n) { /* a corrupt file: start empty */
        ci.initialDataSize = 0;
        ci.pInitialData = NULL;
        r = vkCreatePipelineCache(d->dev, &ci, NULL, &d->pcache);
    }
    free(data);
    if (r != VK_SUCCESS) d->pcache = VK_NULL_HANDLE; /* works without one, only slower */
    return 0;
}

void vk_pipelines_free(vk_dev *d) {
    cache_save(d);
    for (int i = 0; i < d->n_pipes; i++) vkDestroyPipeline(d->dev, d->pipes[i].pipe, NULL);
    free(d->pipes);
    d->pipes = NULL;
    d->n_pipes = d->cap_pipes = 0;
    for (int i = 0; i < (int)LOOM_SPV_COUNT; i++)
        if (d->modules[i]) vkDestroyShaderModule(d->dev, d->modules[i], NULL);
    if (d->pcache) vkDestroyPipelineCache(d->dev, d->pcache, NULL);
    if (d->layout) vkDestroyPipelineLayout(d->dev, d->layout, NULL);
    if (d->dsl) vkDestroyDescriptorSetLayout(d->dev, d->dsl, NULL);
}

/* LOOM_VK_PIPE_STATS=1: one stderr line per new pipeline, "pipe-stats SHADER spec=a,b,c,d" and the
 * driver's statistics of its executable(s) (VK_KHR_pipeline_executable_properties; what a driver
 * reports is its own: NVIDIA's register count, lavapipe's instruction counts, ...) */
static void print_pipe_stats(vk_dev *d, VkPipeline p, loom_spv_id s, const uint32_t sv[4]) {
    PFN_vkGetPipelineExecutableStatisticsKHR get_stats =
        (PFN_vkGetPipelineExecutableStatisticsKHR)vkGetDeviceProcAddr(d->dev, "vkGetPipelineExecutableStatisticsKHR");
    if (!get_stats) return;
    VkPipelineExecutableStatisticKHR st[32];
    uint32_t n = 32;
    for (uint32_t i = 0; i < n; i++) st[i] = (VkPipelineExecutableStatisticKHR){.sType = VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_STATISTIC_KHR};
    VkPipelineExecutableInfoKHR ei = {.sType = VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_INFO_KHR, .pipeline = p};
    VkResult r = get_stats(d->dev, &ei, &n, st);
    if (r != VK_SUCCESS && r != VK_INCOMPLETE) return;
    fprintf(stderr, "pipe-stats %s spec=%u,%u,%u,%u:", loom_spirv_table[s].name, sv[0], sv[1], sv[2], sv[3]);
    for (uint32_t i = 0; i < n; i++) {
        fprintf(stderr, " %s=", st[i].name);
        switch (st[i].format) {
        case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_BOOL32_KHR: fprintf(stderr, "%u", st[i].value.b32); break;
        case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_INT64_KHR: fprintf(stderr, "%lld", (long long)st[i].value.i64); break;
        case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_UINT64_KHR: fprintf(stderr, "%llu", (unsigned long long)st[i].value.u64); break;
        default: fprintf(stderr, "%g", st[i].value.f64); break;
        }
    }
    fputc('\n', stderr);
}

VkPipeline vk_pipeline_get(vk_dev *d, loom_spv_id s, const uint32_t spec[4]) {
    static const uint32_t zero[4];
    if (!spec) spec = zero;
    for (int i = 0; i < d->n_pipes; i++)
        if (d->pipes[i].shader == s && !memcmp(d->pipes[i].spec, spec, sizeof d->pipes[i].spec))
            return d->pipes[i].pipe;
    VkResult r;
    if (!d->modules[s]) {
        VkShaderModuleCreateInfo mi = {.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
                                       .codeSize = loom_spirv_table[s].size,
                                       .pCode = loom_spirv_table[s].code};
        r = vkCreateShaderModule(d->dev, &mi, NULL, &d->modules[s]);
        if (r != VK_SUCCESS) {
            loom_err("vulkan: shader %s: vkCreateShaderModule failed: %s", loom_spirv_table[s].name,
                     vk_result_str(r));
            return VK_NULL_HANDLE;
        }
    }
    if (d->n_pipes == d->cap_pipes) {
        int cap = d->cap_pipes ? 2 * d->cap_pipes : 32;
        vk_pipeline *np = loom_realloc(d->pipes, (size_t)cap * sizeof *np);
        if (!np) return VK_NULL_HANDLE;
        d->pipes = np;
        d->cap_pipes = cap;
    }
    /* constant 0: workgroup size (shaders that take it); 1..3: shader-specific values. A shader
     * ignores entries it does not declare, so all four are always passed. */
    uint32_t sv[4] = {spec[0] ? spec[0] : 128, spec[1], spec[2], spec[3]};
    VkSpecializationMapEntry me[4];
    for (uint32_t i = 0; i < 4; i++) me[i] = (VkSpecializationMapEntry){.constantID = i, .offset = 4 * i, .size = 4};
    VkSpecializationInfo si = {.mapEntryCount = 4, .pMapEntries = me, .dataSize = sizeof sv, .pData = sv};
    VkComputePipelineCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
        .stage = {.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                  .stage = VK_SHADER_STAGE_COMPUTE_BIT,
                  .module = d->modules[s],
                  .pName = "main",
                  .pSpecializationInfo = &si},
        .layout = d->layout};
    if (d->pipe_stats) ci.flags = VK_PIPELINE_CREATE_CAPTURE_STATISTICS_BIT_KHR;
    VkPipeline p;
    r = vkCreateComputePipelines(d->dev, d->pcache, 1, &ci, NULL, &p);
    if (r != VK_SUCCESS) {
        loom_err("vulkan: shader %s: vkCreateComputePipelines failed: %s", loom_spirv_table[s].name,
                 vk_result_str(r));
        return VK_NULL_HANDLE;
    }
    if (d->pipe_stats) print_pipe_stats(d, p, s, sv);
    d->cache_dirty = true;
    d->pipes[d->n_pipes].shader = s;
    memcpy(d->pipes[d->n_pipes].spec, spec, sizeof d->pipes[d->n_pipes].spec);
    d->pipes[d->n_pipes].pipe = p;
    d->n_pipes++;
    return p;
}

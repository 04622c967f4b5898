/* Vulkan device, memory and submission: the parts of the backend that know nothing of ops.
 *
 * Memory model: every loom_buffer is device-local. The host reaches it only through a
 * host-visible staging buffer (two halves, so the next chunk is filled while the previous one
 * is copied). Small aligned writes (token ids, positions) and fills skip staging: they are
 * recorded with vkCmdUpdateBuffer/vkCmdFillBuffer into a "pending" command buffer that goes to
 * the queue in front of the next submission, so a decode step costs one submit for its inputs
 * and its graph together.
 */
#include "backends/vulkan/vk_internal.h"

#include <dlfcn.h>
#include <inttypes.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *vk_result_str(VkResult r) {
    switch (r) {
    case VK_SUCCESS: return "VK_SUCCESS";
    case VK_NOT_READY: return "VK_NOT_READY";
    case VK_TIMEOUT: return "VK_TIMEOUT";
    case VK_INCOMPLETE: return "VK_INCOMPLETE";
    case VK_ERROR_OUT_OF_HOST_MEMORY: return "VK_ERROR_OUT_OF_HOST_MEMORY";
    case VK_ERROR_OUT_OF_DEVICE_MEMORY: return "VK_ERROR_OUT_OF_DEVICE_MEMORY";
    case VK_ERROR_INITIALIZATION_FAILED: return "VK_ERROR_INITIALIZATION_FAILED";
    case VK_ERROR_DEVICE_LOST: return "VK_ERROR_DEVICE_LOST";
    case VK_ERROR_MEMORY_MAP_FAILED: return "VK_ERROR_MEMORY_MAP_FAILED";
    case VK_ERROR_LAYER_NOT_PRESENT: return "VK_ERROR_LAYER_NOT_PRESENT";
    case VK_ERROR_EXTENSION_NOT_PRESENT: return "VK_ERROR_EXTENSION_NOT_PRESENT";
    case VK_ERROR_FEATURE_NOT_PRESENT: return "VK_ERROR_FEATURE_NOT_PRESENT";
    case VK_ERROR_INCOMPATIBLE_DRIVER: return "VK_ERROR_INCOMPATIBLE_DRIVER";
    case VK_ERROR_TOO_MANY_OBJECTS: return "VK_ERROR_TOO_MANY_OBJECTS";
    case VK_ERROR_FORMAT_NOT_SUPPORTED: return "VK_ERROR_FORMAT_NOT_SUPPORTED";
    case VK_ERROR_FRAGMENTED_POOL: return "VK_ERROR_FRAGMENTED_POOL";
    case VK_ERROR_OUT_OF_POOL_MEMORY: return "VK_ERROR_OUT_OF_POOL_MEMORY";
    default: return "VK_ERROR_UNKNOWN";
    }
}

const char *vk_type_str(VkPhysicalDeviceType t) {
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "discrete GPU";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return "integrated GPU";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return "virtual GPU";
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return "CPU";
    default: return "other";
    }
}

/* Keeps each Vulkan driver (ICD) and layer library mapped after the loader lets go of it at
 * vkDestroyInstance. Mesa's lavapipe allocates 128 bytes once per process (a pthread_once inside
 * vkEnumeratePhysicalDevices) and keeps them in its globals: with the driver unloaded before exit,
 * LeakSanitizer (make asan, make lsan) cannot see that reference and reports a leak in an unnamed
 * module for every Vulkan run. Mapped, the block stays reachable. Costs nothing but the mapping. */
static int pin_driver(struct dl_phdr_info *info, size_t size, void *arg) {
    (void)size;
    (void)arg;
    const char *n = info->dlpi_name;
    if (n && (strstr(n, "libvulkan_") || strstr(n, "libVkLayer_"))) {
        void *h = dlopen(n, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
        (void)h; /* RTLD_NODELETE is the point; the extra reference is never dropped on purpose */
    }
    return 0;
}

static bool has_ext(const VkExtensionProperties *e, uint32_t n, const char *name) {
    for (uint32_t i = 0; i < n; i++)
        if (!strcmp(e[i].extensionName, name)) return true;
    return false;
}

VkInstance vk_instance_new(bool quiet) {
    uint32_t n = 0;
    if (vkEnumerateInstanceExtensionProperties(NULL, &n, NULL) != VK_SUCCESS) n = 0;
    VkExtensionProperties *ext = n ? calloc(n, sizeof *ext) : NULL;
    if (ext && vkEnumerateInstanceExtensionProperties(NULL, &n, ext) != VK_SUCCESS) n = 0;
    const char *names[2];
    uint32_t nn = 0;
    VkInstanceCreateFlags flags = 0;
    /* lets MoltenVK-style portability drivers be enumerated too */
    if (ext && has_ext(ext, n, VK_KHR_PORTABILITY_ENUMERATION_EXTENSION_NAME)) {
        names[nn++] = VK_KHR_PORTABILITY_ENUMERATION_EXTENSION_NAME;
        flags |= VK_INSTANCE_CREATE_ENUMERATE_PORTABILITY_BIT_KHR;
    }
    free(ext);
    const char *layers[1] = {"VK_LAYER_KHRONOS_validation"};
    const char *val = getenv("LOOM_VK_VALIDATE");
    uint32_t nl = (val && *val && *val != '0') ? 1 : 0;
    VkApplicationInfo app = {.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
                             .pApplicationName = "loom",
                             .pEngineName = "loom",
                             /* 1.3 only for LOOM_VK_CM2: matmul_cm2.comp is SPIR-V 1.6 */
                             .apiVersion = getenv("LOOM_VK_CM2") && *getenv("LOOM_VK_CM2") ? VK_API_VERSION_1_3
                                                                                           : VK_API_VERSION_1_2};
    VkInstanceCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
                               .flags = flags,
                               .pApplicationInfo = &app,
                               .enabledLayerCount = nl,
                               .ppEnabledLayerNames = layers,
                               .enabledExtensionCount = nn,
                               .ppEnabledExtensionNames = names};
    VkInstance inst = VK_NULL_HANDLE;
    VkResult r = vkCreateInstance(&ci, NULL, &inst);
    if (r == VK_ERROR_LAYER_NOT_PRESENT && nl) {
        if (!quiet) fprintf(stderr, "loom: vulkan: LOOM_VK_VALIDATE set but no validation layer\n");
        ci.enabledLayerCount = 0;
        r = vkCreateInstance(&ci, NULL, &inst);
    }
    if (r != VK_SUCCESS) {
        /* no loader/ICD at all reads the same as no device to the user */
        loom_err("vulkan: no device found (vkCreateInstance: %s)", vk_result_str(r));
        return VK_NULL_HANDLE;
    }
    dl_iterate_phdr(pin_driver, NULL);
    return inst;
}

static int type_rank(VkPhysicalDeviceType t) {
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return 4;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return 3;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return 2;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return 1;
    default: return 0;
    }
}

static size_t device_local_bytes(VkPhysicalDevice p) {
    VkPhysicalDeviceMemoryProperties m;
    vkGetPhysicalDeviceMemoryProperties(p, &m);
    size_t best = 0;
    for (uint32_t i = 0; i < m.memoryHeapCount; i++)
        if ((m.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) && m.memoryHeaps[i].size > best)
            best = m.memoryHeaps[i].size;
    return best;
}

static size_t env_size(const char *name, size_t dflt) {
    const char *s = getenv(name);
    if (!s || !*s) return dflt;
    char *end;
    unsigned long long v = strtoull(s, &end, 0);
    if (*end || v < 4096) return dflt;
    return v < dflt ? (size_t)v : dflt; /* only ever lowers a limit */
}

static bool env_flag(const char *name) {
    const char *s = getenv(name);
    return s && *s && *s != '0';
}

/* The first member of every knob table's entries is its name. */
static const char *knob_name(const void *tab, size_t i, size_t size) {
    return *(const char *const *)(const void *)((const char *)tab + i * size);
}

int vk_knob_find(const void *tab, size_t n, size_t size, const char *s) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(knob_name(tab, i, size), s)) return (int)i;
    return -1;
}

const char *vk_knob_names(char *buf, size_t len, const void *tab, size_t n, size_t size) {
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(buf);
        snprintf(buf + l, len - l, "%s%s", l ? ", " : "", knob_name(tab, i, size));
    }
    return buf;
}

int vk_knob_env(const char *var, const void *tab, size_t n, size_t size, int fallback) {
    const char *v = getenv(var);
    if (!v || !*v) return -1;
    int m = vk_knob_find(tab, n, size, v);
    if (m < 0) {
        char names[128] = "";
        fprintf(stderr, "loom: vulkan: %s=%s is not one of %s; using %s\n", var, v,
                vk_knob_names(names, sizeof names, tab, n, size), knob_name(tab, (size_t)fallback, size));
        m = fallback;
    }
    return m;
}

static int pick_memory_type(const VkPhysicalDeviceMemoryProperties *m, uint32_t bits,
                            VkMemoryPropertyFlags need, VkMemoryPropertyFlags want) {
    int fallback = -1;
    for (uint32_t i = 0; i < m->memoryTypeCount; i++) {
        if (!(bits & (1u << i))) continue;
        VkMemoryPropertyFlags f = m->memoryTypes[i].propertyFlags;
        if ((f & need) != need) continue;
        if ((f & want) == want) return (int)i;
        if (fallback < 0) fallback = (int)i;
    }
    return fallback;
}

/* Bytes free in a heap: the driver's budget when VK_EXT_memory_budget is there, else the heap
 * size minus what this backend allocated. */
static size_t heap_free(vk_dev *d, uint32_t heap, size_t *total) {
    *total = d->mem.memoryHeaps[heap].size;
    if (d->has_budget) {
        VkPhysicalDeviceMemoryBudgetPropertiesEXT b = {
            .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT};
        VkPhysicalDeviceMemoryProperties2 p = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2,
                                               .pNext = &b};
        vkGetPhysicalDeviceMemoryProperties2(d->phys, &p);
        *total = b.heapBudget[heap];
        return b.heapBudget[heap] > b.heapUsage[heap] ? b.heapBudget[heap] - b.heapUsage[heap] : 0;
    }
    return *total > d->allocated ? *total - d->allocated : 0;
}

static double mib(size_t n) { return (double)n / (1024.0 * 1024.0); }

/* A buffer with its own memory of type `mt`. */
static int make_buffer(vk_dev *d, size_t size, int mt, VkBuffer *buf, VkDeviceMemory *mem) {
    *buf = VK_NULL_HANDLE;
    *mem = VK_NULL_HANDLE;
    VkBufferCreateInfo bi = {.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
                             .size = size,
                             .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                                      VK_BUFFER_USAGE_TRANSFER_DST_BIT |
                                      /* LOOM_VK_CM2: decode functions see blocks through buffer references */
                                      (d->cm2 ? VK_BUFFER_USAGE_SHADER_DEVICE_ADDRESS_BIT : 0),
                             .sharingMode = VK_SHARING_MODE_EXCLUSIVE};
    VkResult r = vkCreateBuffer(d->dev, &bi, NULL, buf);
    if (r != VK_SUCCESS)
        return loom_err("vulkan: vkCreateBuffer(%.1f MiB) on %s failed: %s", mib(size), d->name,
                        vk_result_str(r));
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(d->dev, *buf, &req);
    int t = pick_memory_type(&d->mem, req.memoryTypeBits, d->mem.memoryTypes[mt].propertyFlags, 0);
    if (t < 0) t = mt;
    uint32_t heap = d->mem.memoryTypes[t].heapIndex;
    size_t total, avail = heap_free(d, heap, &total);
    if (req.size > avail) {
        vkDestroyBuffer(d->dev, *buf, NULL);
        *buf = VK_NULL_HANDLE;
        return loom_err("vulkan: out of device memory on %s: need %.1f MiB, %.1f MiB free of %.1f MiB "
                        "(heap %u, %.1f MiB held by loom)",
                        d->name, mib(req.size), mib(avail), mib(total), heap, mib(d->allocated));
    }
    VkMemoryAllocateFlagsInfo af = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_FLAGS_INFO,
                                    .flags = VK_MEMORY_ALLOCATE_DEVICE_ADDRESS_BIT};
    VkMemoryAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
                               .pNext = d->cm2 ? &af : NULL,
                               .allocationSize = req.size,
                               .memoryTypeIndex = (uint32_t)t};
    r = vkAllocateMemory(d->dev, &ai, NULL, mem);
    if (r != VK_SUCCESS) {
        vkDestroyBuffer(d->dev, *buf, NULL);
        *buf = VK_NULL_HANDLE;
        *mem = VK_NULL_HANDLE;
        return loom_err("vulkan: out of device memory on %s: allocating %.1f MiB failed (%s; %.1f MiB "
                        "held by loom)",
                        d->name, mib(req.size), vk_result_str(r), mib(d->allocated));
    }
    r = vkBindBufferMemory(d->dev, *buf, *mem, 0);
    if (r != VK_SUCCESS) {
        vkDestroyBuffer(d->dev, *buf, NULL);
        vkFreeMemory(d->dev, *mem, NULL);
        *buf = VK_NULL_HANDLE;
        *mem = VK_NULL_HANDLE;
        return loom_err("vulkan: vkBindBufferMemory failed: %s", vk_result_str(r));
    }
    d->allocated += req.size;
    return 0;
}

static void drop_buffer(vk_dev *d, VkBuffer buf, VkDeviceMemory mem) {
    if (buf) vkDestroyBuffer(d->dev, buf, NULL);
    if (mem) vkFreeMemory(d->dev, mem, NULL);
}

loom_buffer *vk_buf_alloc(vk_dev *d, size_t nbytes, bool weights) {
    size_t padded = (nbytes + 15) & ~(size_t)15;
    if (padded == 0) padded = 16;
    if (padded > d->max_alloc && !weights)
        return loom_err_null("vulkan: a %.1f MiB buffer exceeds the largest allocation %s allows "
                             "(%.1f MiB)", mib(nbytes), d->name, mib(d->max_alloc));
    loom_buffer *b = loom_calloc(1, sizeof *b);
    if (!b) return NULL;
    b->size = nbytes;
    b->serial = ++d->next_serial;
    b->readonly = weights;
    int nseg = 1;
    size_t step = padded;
    if (weights && padded > d->piece) {
        step = (d->piece - d->overlap) & ~(size_t)255;
        nseg = (int)((padded - d->overlap + step - 1) / step);
    }
    b->seg = loom_calloc((size_t)nseg, sizeof *b->seg);
    if (!b->seg) {
        free(b);
        return NULL;
    }
    for (int i = 0; i < nseg; i++) {
        size_t start = (size_t)i * step;
        size_t size = padded - start;
        if (nseg > 1 && size > step + d->overlap) size = step + d->overlap;
        b->seg[i].start = start;
        b->seg[i].size = size;
        if (make_buffer(d, size, d->mt_device, &b->seg[i].buf, &b->seg[i].mem) < 0) {
            b->n_seg = i;
            vk_buf_free(d, b);
            return NULL;
        }
        b->n_seg = i + 1;
    }
    return b;
}

void vk_buf_free(vk_dev *d, loom_buffer *b) {
    if (!b) return;
    /* a submission may still read it */
    vk_wait(d);
    for (int i = 0; i < b->n_seg; i++) {
        VkMemoryRequirements req;
        vkGetBufferMemoryRequirements(d->dev, b->seg[i].buf, &req);
        d->allocated = d->allocated > req.size ? d->allocated - req.size : 0;
        drop_buffer(d, b->seg[i].buf, b->seg[i].mem);
    }
    free(b->seg);
    free(b);
}

int vk_buf_seg(const loom_buffer *b, size_t off, size_t n) {
    for (int i = 0; i < b->n_seg; i++)
        if (off >= b->seg[i].start && off + n <= b->seg[i].start + b->seg[i].size) return i;
    return -1;
}

/* ---- submission ------------------------------------------------------------------------------ */

void vk_barrier_all(VkCommandBuffer cmd) {
    VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                          .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT |
                                           VK_ACCESS_HOST_WRITE_BIT,
                          .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                                           VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT};
    vkCmdPipelineBarrier(cmd,
                         VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT |
                             VK_PIPELINE_STAGE_HOST_BIT,
                         VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT, 0, 1, &mb, 0,
                         NULL, 0, NULL);
}

/* Waits for f: first polls its status for up to d->spin_us microseconds (LOOM_VK_SPIN_US), then
 * blocks in vkWaitForFences. A blocking wait returns only when the driver wakes the thread, which can
 * be tens of microseconds after the GPU finished: a decode step of a small model is ~1.5 ms, so that
 * wake-up is a few percent of each token, and varies. Polling costs a CPU core while it lasts. */
static int wait_fence(vk_dev *d, VkFence f) {
    VkResult r = VK_NOT_READY;
    for (double t1 = loom_now() + d->spin_us * 1e-6; d->spin_us && r == VK_NOT_READY && loom_now() < t1;)
        r = vkGetFenceStatus(d->dev, f);
    if (r == VK_NOT_READY) r = vkWaitForFences(d->dev, 1, &f, VK_TRUE, UINT64_MAX);
    if (r != VK_SUCCESS) return loom_err("vulkan: waiting for %s failed: %s", d->name, vk_result_str(r));
    return 0;
}

int vk_wait(vk_dev *d) {
    int rc = 0;
    if (d->in_flight) {
        if (wait_fence(d, d->fence) < 0) rc = -1;
        d->in_flight = false;
    }
    if (d->once_busy) {
        if (wait_fence(d, d->once_fence) < 0) rc = -1;
        d->once_busy = false;
    }
    for (int h = 0; h < 2; h++)
        if (d->st_busy[h]) {
            if (wait_fence(d, d->st_fence[h]) < 0) rc = -1;
            d->st_busy[h] = false;
        }
    return rc;
}

static int begin(VkCommandBuffer cmd) {
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                   .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
    VkResult r = vkBeginCommandBuffer(cmd, &bi);
    if (r != VK_SUCCESS) return loom_err("vulkan: vkBeginCommandBuffer failed: %s", vk_result_str(r));
    /* orders this buffer after everything submitted before it */
    vk_barrier_all(cmd);
    return 0;
}

VkCommandBuffer vk_begin_once(vk_dev *d) {
    /* a plan may still run: the barrier that opens this buffer orders it after the plan, so
     * only this buffer's previous use must have finished */
    if (d->once_busy) {
        if (wait_fence(d, d->once_fence) < 0) return VK_NULL_HANDLE;
        d->once_busy = false;
    }
    if (begin(d->cmd_once) < 0) return VK_NULL_HANDLE;
    return d->cmd_once;
}

/* The pending buffer collects small writes until the next submission. */
static VkCommandBuffer pending(vk_dev *d) {
    if (d->pending_open) {
        vk_barrier_all(d->cmd_pending); /* consecutive writes may overlap */
        return d->cmd_pending;
    }
    /* the previous pending buffer went out with some earlier submission: let it finish */
    if (vk_wait(d) < 0) return VK_NULL_HANDLE;
    if (begin(d->cmd_pending) < 0) return VK_NULL_HANDLE;
    d->pending_open = true;
    return d->cmd_pending;
}

/* Submit [pending?, cmd] signalling `fence`. cmd is ended here unless it is a recorded plan. */
static int submit_with(vk_dev *d, VkCommandBuffer cmd, bool end_cmd, VkFence fence) {
    VkCommandBuffer cmds[2];
    uint32_t n = 0;
    VkResult r;
    if (d->pending_open) {
        r = vkEndCommandBuffer(d->cmd_pending);
        d->pending_open = false;
        if (r != VK_SUCCESS) return loom_err("vulkan: vkEndCommandBuffer failed: %s", vk_result_str(r));
        cmds[n++] = d->cmd_pending;
    }
    if (cmd) {
        if (end_cmd && (r = vkEndCommandBuffer(cmd)) != VK_SUCCESS)
            return loom_err("vulkan: vkEndCommandBuffer failed: %s", vk_result_str(r));
        cmds[n++] = cmd;
    }
    if (!n) return 0;
    vkResetFences(d->dev, 1, &fence);
    VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = n, .pCommandBuffers = cmds};
    r = vkQueueSubmit(d->queue, 1, &si, fence);
    if (r != VK_SUCCESS) return loom_err("vulkan: vkQueueSubmit on %s failed: %s", d->name, vk_result_str(r));
    return 0;
}

int vk_submit(vk_dev *d, VkCommandBuffer cmd, bool wait) {
    if (cmd == d->cmd_once) { /* begun by vk_begin_once, which saw its fence signalled */
        if (submit_with(d, cmd, true, d->once_fence) < 0) return -1;
        d->once_busy = true;
        if (!wait) return 0;
        /* the opening barrier made everything submitted earlier finish first */
        if (wait_fence(d, d->once_fence) < 0) return -1;
        d->once_busy = false;
        if (d->in_flight && vkGetFenceStatus(d->dev, d->fence) == VK_SUCCESS) d->in_flight = false;
        return 0;
    }
    /* a recorded plan: its previous run (same command buffer) must be over */
    if (d->in_flight) {
        if (wait_fence(d, d->fence) < 0) return -1;
        d->in_flight = false;
    }
    if (submit_with(d, cmd, false, d->fence) < 0) return -1;
    d->in_flight = true;
    if (wait) return vk_wait(d);
    return 0;
}

/* ---- staging ------------------------------------------------------------------------------- */

static int staging_init(vk_dev *d) {
    if (d->st_buf) return 0;
    if (make_buffer(d, 2 * (size_t)VK_STAGING_HALF, d->mt_upload, &d->st_buf, &d->st_mem) < 0) {
        loom_err_prefix("vulkan: staging buffer");
        return -1;
    }
    void *p;
    VkResult r = vkMapMemory(d->dev, d->st_mem, 0, VK_WHOLE_SIZE, 0, &p);
    if (r != VK_SUCCESS) return loom_err("vulkan: vkMapMemory(staging) failed: %s", vk_result_str(r));
    d->st_map = p;
    return 0;
}

/* Get staging half h ready for the host: wait until its last copy finished. */
static int staging_take(vk_dev *d, int h) {
    if (d->st_busy[h]) {
        if (wait_fence(d, d->st_fence[h]) < 0) return -1;
        d->st_busy[h] = false;
    }
    return 0;
}

static int check_range(const loom_buffer *b, size_t off, size_t n, const char *what) {
    size_t end;
    if (!b) return loom_err("vulkan: %s on a NULL buffer", what);
    if (!loom_add_ok(off, n, &end) || end > b->size)
        return loom_err("vulkan: %s of %zu bytes at %zu is outside a %zu-byte buffer", what, n, off, b->size);
    return 0;
}

int vk_buf_write(vk_dev *d, loom_buffer *b, size_t off, const void *src, size_t n) {
    if (check_range(b, off, n, "write") < 0) return -1;
    if (!n) return 0;
    if (n <= 65536 && off % 4 == 0 && n % 4 == 0 && b->n_seg == 1) {
        VkCommandBuffer c = pending(d);
        if (!c) return -1;
        vkCmdUpdateBuffer(c, b->seg[0].buf, off, n, src);
        return 0;
    }
    if (staging_init(d) < 0) return -1;
    const uint8_t *s = src;
    int h = 0;
    for (size_t done = 0; done < n; h ^= 1) {
        size_t len = n - done < VK_STAGING_HALF ? n - done : VK_STAGING_HALF;
        if (staging_take(d, h) < 0) return -1;
        memcpy(d->st_map + (size_t)h * VK_STAGING_HALF, s + done, len);
        if (begin(d->st_cmd[h]) < 0) return -1;
        size_t lo = off + done, hi = lo + len;
        for (int i = 0; i < b->n_seg; i++) { /* overlapping pieces each get their copy */
            const vk_seg *g = &b->seg[i];
            size_t a = lo > g->start ? lo : g->start, e = hi < g->start + g->size ? hi : g->start + g->size;
            if (a >= e) continue;
            VkBufferCopy rg = {.srcOffset = (size_t)h * VK_STAGING_HALF + (a - lo), .dstOffset = a - g->start,
                               .size = e - a};
            vkCmdCopyBuffer(d->st_cmd[h], d->st_buf, g->buf, 1, &rg);
        }
        if (submit_with(d, d->st_cmd[h], true, d->st_fence[h]) < 0) return -1;
        d->st_busy[h] = true;
        done += len;
    }
    return 0;
}

int vk_buf_read(vk_dev *d, loom_buffer *b, size_t off, void *dst, size_t n) {
    if (check_range(b, off, n, "read") < 0) return -1;
    if (!n) return 0;
    if (staging_init(d) < 0) return -1;
    uint8_t *o = dst;
    for (size_t done = 0; done < n;) {
        size_t len = n - done < VK_STAGING_HALF ? n - done : VK_STAGING_HALF;
        if (staging_take(d, 0) < 0) return -1; /* an upload may still read it */
        VkCommandBuffer c = vk_begin_once(d);
        if (!c) return -1;
        size_t pos = off + done, got = 0;
        while (got < len) { /* a range may span pieces: copy from each in turn */
            int i = vk_buf_seg(b, pos, 1);
            const vk_seg *g = &b->seg[i];
            size_t take = g->start + g->size - pos;
            if (take > len - got) take = len - got;
            VkBufferCopy rg = {.srcOffset = pos - g->start, .dstOffset = got, .size = take};
            vkCmdCopyBuffer(c, g->buf, d->st_buf, 1, &rg);
            got += take;
            pos += take;
        }
        VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                              .srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT,
                              .dstAccessMask = VK_ACCESS_HOST_READ_BIT};
        vkCmdPipelineBarrier(c, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &mb, 0, NULL, 0,
                             NULL);
        if (vk_submit(d, c, true) < 0) return -1;
        memcpy(o + done, d->st_map, len);
        done += len;
    }
    return 0;
}

int vk_buf_zero(vk_dev *d, loom_buffer *b, size_t off, size_t n) {
    if (check_range(b, off, n, "zero") < 0) return -1;
    if (!n) return 0;
    if (off % 4 == 0 && n % 4 == 0) {
        VkCommandBuffer c = pending(d);
        if (!c) return -1;
        size_t lo = off, hi = off + n;
        for (int i = 0; i < b->n_seg; i++) {
            const vk_seg *g = &b->seg[i];
            size_t a = lo > g->start ? lo : g->start, e = hi < g->start + g->size ? hi : g->start + g->size;
            if (a < e) vkCmdFillBuffer(c, g->buf, a - g->start, e - a, 0);
        }
        return 0;
    }
    /* unaligned: write zeros through staging, a chunk at a time */
    static const uint8_t zeros[4096];
    for (size_t done = 0; done < n;) {
        size_t len = n - done < sizeof zeros ? n - done : sizeof zeros;
        if (vk_buf_write(d, b, off + done, zeros, len) < 0) return -1;
        done += len;
    }
    return 0;
}

/* A device-side copy, recorded into the pending buffer like vk_buf_zero: it goes out before the
 * next plan run. Ranges that cross buffer pieces bounce through the host. */
int vk_buf_copy(vk_dev *d, loom_buffer *dst, size_t doff, loom_buffer *src, size_t soff, size_t n) {
    if (check_range(dst, doff, n, "copy to") < 0 || check_range(src, soff, n, "copy from") < 0) return -1;
    if (!n) return 0;
    int gd = vk_buf_seg(dst, doff, n), gs = vk_buf_seg(src, soff, n);
    if (gd < 0 || gs < 0) {
        void *tmp = malloc(n);
        if (!tmp) return loom_err("vulkan: out of memory for a %zu-byte copy", n);
        int rc = vk_buf_read(d, src, soff, tmp, n);
        if (rc == 0) rc = vk_buf_write(d, dst, doff, tmp, n);
        free(tmp);
        return rc;
    }
    VkCommandBuffer c = pending(d);
    if (!c) return -1;
    VkBufferCopy rg = {.srcOffset = soff - src->seg[gs].start, .dstOffset = doff - dst->seg[gd].start, .size = n};
    vkCmdCopyBuffer(c, src->seg[gs].buf, dst->seg[gd].buf, 1, &rg);
    return 0;
}

/* ---- device --------------------------------------------------------------------------------- */

bool vk_dev_has_ext(VkPhysicalDevice p, const char *name) {
    uint32_t ne = 0;
    vkEnumerateDeviceExtensionProperties(p, NULL, &ne, NULL);
    VkExtensionProperties *ext = ne ? calloc(ne, sizeof *ext) : NULL;
    bool has = ext && vkEnumerateDeviceExtensionProperties(p, NULL, &ne, ext) >= 0 && has_ext(ext, ne, name);
    free(ext);
    return has;
}

bool vk_idot_query(VkPhysicalDevice p) {
    if (!vk_dev_has_ext(p, VK_KHR_SHADER_INTEGER_DOT_PRODUCT_EXTENSION_NAME)) return false;
    VkPhysicalDeviceShaderIntegerDotProductFeaturesKHR f = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_FEATURES_KHR};
    VkPhysicalDeviceFeatures2 f2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &f};
    vkGetPhysicalDeviceFeatures2(p, &f2);
    return f.shaderIntegerDotProduct;
}

bool vk_coopmat_query(VkInstance inst, VkPhysicalDevice p, char *desc, size_t n) {
    char dummy[8];
    if (!desc) desc = dummy, n = sizeof dummy;
    snprintf(desc, n, "no");
    if (!vk_dev_has_ext(p, VK_KHR_COOPERATIVE_MATRIX_EXTENSION_NAME)) return false;
    VkPhysicalDeviceCooperativeMatrixFeaturesKHR cf = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_KHR};
    VkPhysicalDeviceFeatures2 f2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &cf};
    vkGetPhysicalDeviceFeatures2(p, &f2);
    PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR get =
        (PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR)vkGetInstanceProcAddr(
            inst, "vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR");
    uint32_t np = 0;
    if (!cf.cooperativeMatrix || !get || get(p, &np, NULL) != VK_SUCCESS || !np) {
        snprintf(desc, n, "no (extension without the feature or shapes)");
        return false;
    }
    VkCooperativeMatrixPropertiesKHR *cp = calloc(np, sizeof *cp);
    if (!cp) return false;
    for (uint32_t i = 0; i < np; i++) cp[i].sType = VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_KHR;
    if (get(p, &np, cp) < 0) np = 0;
    bool ok = false;
    size_t len = 0;
    desc[0] = 0;
    for (uint32_t i = 0; i < np; i++) {
        const VkCooperativeMatrixPropertiesKHR *c = &cp[i];
        if (c->AType != VK_COMPONENT_TYPE_FLOAT16_KHR || c->BType != VK_COMPONENT_TYPE_FLOAT16_KHR ||
            c->CType != VK_COMPONENT_TYPE_FLOAT32_KHR || c->ResultType != VK_COMPONENT_TYPE_FLOAT32_KHR ||
            c->scope != VK_SCOPE_SUBGROUP_KHR)
            continue;
        if (c->MSize == 16 && c->NSize == 16 && c->KSize == 16) ok = true;
        if (len < n) len += (size_t)snprintf(desc + len, n - len, "%s%ux%ux%u", len ? " " : "", c->MSize, c->NSize, c->KSize);
    }
    free(cp);
    if (len && len < n) snprintf(desc + len, n - len, " f16->f32");
    if (!len) snprintf(desc, n, "no (no f16->f32 shapes)");
    else if (!ok) {
        char shapes[160];
        snprintf(shapes, sizeof shapes, "%s", desc);
        snprintf(desc, n, "no (no 16x16x16 among %s)", shapes);
    }
    return ok;
}

static bool usable(VkPhysicalDevice p, char *why, size_t n) {
    VkPhysicalDeviceProperties pr;
    vkGetPhysicalDeviceProperties(p, &pr);
    if (VK_API_VERSION_MAJOR(pr.apiVersion) == 1 && VK_API_VERSION_MINOR(pr.apiVersion) < 2) {
        snprintf(why, n, "%.200s supports Vulkan %u.%u, loom needs 1.2", pr.deviceName,
                 VK_API_VERSION_MAJOR(pr.apiVersion), VK_API_VERSION_MINOR(pr.apiVersion));
        return false;
    }
    uint32_t nq = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(p, &nq, NULL);
    VkQueueFamilyProperties q[32];
    if (nq > 32) nq = 32;
    vkGetPhysicalDeviceQueueFamilyProperties(p, &nq, q);
    for (uint32_t i = 0; i < nq; i++)
        if (q[i].queueFlags & VK_QUEUE_COMPUTE_BIT) return true;
    snprintf(why, n, "%.200s has no compute queue", pr.deviceName);
    return false;
}

vk_dev *vk_dev_open(const loom_backend_opts *o) {
    int want = o ? o->device_index : -1;
    VkInstance inst = vk_instance_new(false);
    if (!inst) return NULL;
    uint32_t n = 0;
    VkResult r = vkEnumeratePhysicalDevices(inst, &n, NULL);
    if (r != VK_SUCCESS || n == 0) {
        vkDestroyInstance(inst, NULL);
        return loom_err_null("vulkan: no device found");
    }
    VkPhysicalDevice *pd = calloc(n, sizeof *pd);
    if (!pd || vkEnumeratePhysicalDevices(inst, &n, pd) < 0) {
        free(pd);
        vkDestroyInstance(inst, NULL);
        return loom_err_null("vulkan: no device found");
    }
    int pick = -1;
    char why[256] = "";
    if (want >= 0) {
        if ((uint32_t)want >= n) {
            free(pd);
            vkDestroyInstance(inst, NULL);
            return loom_err_null("vulkan: device %d not found (%u device%s; see `loom devices`)", want, n,
                                 n == 1 ? "" : "s");
        }
        if (!usable(pd[want], why, sizeof why)) {
            free(pd);
            vkDestroyInstance(inst, NULL);
            return loom_err_null("vulkan: device %d: %s", want, why);
        }
        pick = want;
    } else {
        int best_rank = -1;
        size_t best_mem = 0;
        for (uint32_t i = 0; i < n; i++) {
            if (!usable(pd[i], why, sizeof why)) continue;
            VkPhysicalDeviceProperties pr;
            vkGetPhysicalDeviceProperties(pd[i], &pr);
            int rank = type_rank(pr.deviceType);
            size_t m = device_local_bytes(pd[i]);
            if (rank > best_rank || (rank == best_rank && m > best_mem)) {
                best_rank = rank;
                best_mem = m;
                pick = (int)i;
            }
        }
        if (pick < 0) {
            free(pd);
            vkDestroyInstance(inst, NULL);
            return loom_err_null("vulkan: no usable device found (%s)", why);
        }
    }
    VkPhysicalDevice phys = pd[pick];
    free(pd);

    vk_dev *d = loom_calloc(1, sizeof *d);
    if (!d) {
        vkDestroyInstance(inst, NULL);
        return NULL;
    }
    d->inst = inst;
    d->phys = phys;
    d->verbose = (o && o->verbose) || env_flag("LOOM_VK_VERBOSE");
    const char *vv = getenv("LOOM_VK_VERBOSE");
    d->trace_rec = vv && atoi(vv) >= 2;

    VkPhysicalDeviceSubgroupProperties sg = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
    VkPhysicalDeviceMaintenance3Properties m3 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES,
                                                 .pNext = &sg};
    VkPhysicalDeviceIDProperties idp = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_ID_PROPERTIES, .pNext = &m3};
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &idp};
    vkGetPhysicalDeviceProperties2(phys, &p2);
    d->props = p2.properties;
    snprintf(d->name, sizeof d->name, "%s", d->props.deviceName);
    memcpy(d->uuid, idp.deviceUUID, VK_UUID_SIZE);
    vkGetPhysicalDeviceMemoryProperties(phys, &d->mem);
    d->subgroup_size = sg.subgroupSize;
    d->subgroup_arith = (sg.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
                        (sg.supportedOperations & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT) &&
                        (sg.supportedOperations & VK_SUBGROUP_FEATURE_BASIC_BIT) &&
                        !env_flag("LOOM_VK_NO_SUBGROUP");
    d->max_alloc = env_size("LOOM_VK_MAX_ALLOC", m3.maxMemoryAllocationSize ? m3.maxMemoryAllocationSize
                                                                           : ((size_t)1 << 31));
    /* push-constant element offsets are 32-bit: never bind more than 4 GiB - 256 */
    size_t range = d->props.limits.maxStorageBufferRange;
    if (range > 0xffffff00u) range = 0xffffff00u;
    d->max_range = env_size("LOOM_VK_MAX_RANGE", range) & ~(size_t)255;
    d->align = d->props.limits.minStorageBufferOffsetAlignment;
    if (d->align < 16) d->align = 16;
    /* LOOM_VK_MAX_WEIGHT_PIECE (tests) splits even small weights, to exercise the > 4 GiB path */
    d->piece = env_size("LOOM_VK_MAX_WEIGHT_PIECE", d->max_alloc) & ~(size_t)255;
    d->overlap = d->max_range < d->piece / 2 ? d->max_range : (d->piece / 2) & ~(size_t)255;

    VkPhysicalDeviceVulkan12Features f12 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
    VkPhysicalDeviceVulkan11Features f11 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES,
                                            .pNext = &f12};
    VkPhysicalDeviceFeatures2 f2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &f11};
    vkGetPhysicalDeviceFeatures2(phys, &f2);
    d->f16_storage = f11.storageBuffer16BitAccess && f12.shaderFloat16 && !env_flag("LOOM_VK_NO_F16S");

    d->has_budget = vk_dev_has_ext(phys, VK_EXT_MEMORY_BUDGET_EXTENSION_NAME);
    /* LOOM_VK_PIPE_STATS=1: the driver's statistics of each pipeline (registers, shared memory, ...:
     * whatever VK_KHR_pipeline_executable_properties reports) printed as it is created, for tuning */
    d->pipe_stats = env_flag("LOOM_VK_PIPE_STATS");
    if (d->pipe_stats && !vk_dev_has_ext(phys, VK_KHR_PIPELINE_EXECUTABLE_PROPERTIES_EXTENSION_NAME)) {
        fprintf(stderr, "loom: LOOM_VK_PIPE_STATS: %s lacks VK_KHR_pipeline_executable_properties\n", d->name);
        d->pipe_stats = false;
    }
    /* 4 x 8-bit packed integer dot products (the matvec_dpi_* GEMVs): VK_KHR_shader_integer_dot_product
     * (core in 1.3, where the feature is required; the instance asks for 1.2, so the extension);
     * LOOM_VK_NO_IDOT=1 takes the shift-and-multiply variants instead */
    d->idot = vk_idot_query(phys) && !env_flag("LOOM_VK_NO_IDOT");
#ifdef LOOM_VK_COOPMAT
    /* tensor cores for the prefill matmul: the shader uses f16 arithmetic types and subgroup ids,
     * glslang compiles coopmat shaders for the Vulkan memory model, and it runs (4 or 8) x
     * subgroup-size invocations (8..64: its prefetch registers are sized by it) */
    d->coopmat = f12.shaderFloat16 && f12.vulkanMemoryModel && !env_flag("LOOM_VK_NO_COOPMAT") &&
                 !env_flag("LOOM_VK_NO_SUBGROUP") &&
                 d->subgroup_size >= 8 && d->subgroup_size <= 64 && 8 * d->subgroup_size <= d->props.limits.maxComputeWorkGroupSize[0] &&
                 8 * d->subgroup_size <= d->props.limits.maxComputeWorkGroupInvocations &&
                 vk_coopmat_query(inst, phys, NULL, 0);
#endif
    const char *cbt = getenv("LOOM_VK_CM_BIG_TILES");
    d->cm_big_tiles = cbt && atoi(cbt) > 0 ? (uint32_t)atoi(cbt) : 512;
    const char *qcm = getenv("LOOM_VK_QCM"); /* "tiles": the slower in-tile dequantisation, for A/B runs */
    d->qcm_tiles = qcm && !strcmp(qcm, "tiles");
    /* the tensor-core prefill variant (vk_record.c's cm_variants): by default sg64 for prefills of
     * 128 rows or more (the H200 A/B of 2026-12-05, docs/benchmarks.md), matmul_cm.comp below;
     * LOOM_VK_CM_VARIANT=<name> picks one for every tensor-core matmul, for A/B runs */
    const char *cmv = getenv("LOOM_VK_CM_VARIANT");
    d->cm_variant = 0;
    d->cm_min_m = 0;
    if (cmv && *cmv) {
        int v = vk_cm_variant_find(d, cmv);
        if (v < 0) {
            vk_dev_close(d);
            return NULL;
        }
        d->cm_variant = (uint32_t)v;
    } else if (d->coopmat) {
        d->cm_variant = vk_cm_variant_default(d);
        d->cm_min_m = 128;
    }
    /* LOOM_VK_CM_KSPLIT=n (1..8): every tiled prefill matmul (tensor-core or not, so lavapipe's
     * tests reach it) split n ways along K, for A/B runs of the split-K choice (vk_record.c's
     * ksplit_of); unset, 0 or out of range: that choice */
    const char *ks = getenv("LOOM_VK_CM_KSPLIT");
    d->ksplit = ks && atoi(ks) >= 1 && atoi(ks) <= 8 ? (uint32_t)atoi(ks) : 0;
    /* LOOM_VK_CM_QTILE: quantised prefill weights dequantised in the sg64 tile loads (vk_record.c).
     * Unset: on where there are cooperative matrices, for every block type but IQ4_NL / IQ4_XS (H100,
     * 2026-12-06, pp512: llama-7b Q4_0 4,525 -> 8,381 t/s, Q4_K_M 4,450 -> 7,272; llama-1.1b within
     * -9%..+7% of the f16 copy per type, but IQ4 -38%; docs/benchmarks.md); elsewhere matmul_q.comp
     * dequantises in registers. Set to 1: every type, also without cooperative matrices. */
    const char *qt = getenv("LOOM_VK_CM_QTILE");
    d->cm_qtile = qt && *qt ? *qt != '0' : d->coopmat;
    d->cm_qtile_all = qt && *qt && *qt != '0';
    if (vk_cm2_setup(d, inst, phys) < 0) { /* LOOM_VK_CM2 (vk_cm2.c) */
        vk_dev_close(d);
        return NULL;
    }
    /* LOOM_VK_FA: the prefill attention kernel. "cmp": attn_cm.comp, Q.K^T and P.V on tensor
     * cores with f16 inputs, the next K/V tile's loads in flight during the products (H100,
     * 2026-12-06, llama-1.1b f16 pp4096: 24,816 t/s on attn_fa.comp -> 34,900; attention 90.6 ->
     * 41.2 ms of the step); "cm": the same without the prefetch (30,330); "cms": that rescaling O
     * through shared memory (24,250); "cmp8" (the default where the device and build have
     * cooperative matrices and a subgroup size of 32 or 64): cmp with 8 subgroups (128 query slots)
     * per workgroup for head dims <= 64, cmp above (H200, 2026-12-06, llama-1.1b f16 pp4096: cmp
     * 34,260, cmp8 38,733); "fa": attn_fa.comp (f32 FMA tiles, the default elsewhere);
     * "row": attention.comp one query row per workgroup (as LOOM_VK_NO_FA=1). Unknown: an error
     * listing them. */
    static const struct {
        const char *name;
    } fa_modes[] = {{"cm"}, {"fa"}, {"row"}, {"cms"}, {"cmp"}, {"cmp8"}};
    const size_t n_fa = sizeof fa_modes / sizeof fa_modes[0];
    const char *fam = getenv("LOOM_VK_FA");
    int fa = -1;
    if (fam && *fam) {
        fa = VK_KNOB_FIND(fa_modes, n_fa, fam);
        if (fa < 0) {
            char names[64] = "";
            loom_err("vulkan: LOOM_VK_FA=%s is not one of %s", fam, VK_KNOB_NAMES(names, fa_modes, n_fa));
            vk_dev_close(d);
            return NULL;
        }
    }
    bool cm_ok = d->coopmat && (d->subgroup_size == 32 || d->subgroup_size == 64);
    d->no_fa = env_flag("LOOM_VK_NO_FA") || fa == 2;
    d->attn_cm = cm_ok && !d->no_fa && fa != 1;
    d->attn_cm_var = fa == 0 ? 0 : fa == 3 ? 1 : fa == 4 ? 2 : 3; /* default: cmp8 (cmp above head dim 64) */
    d->attn_cm_forced = fa == 0 || fa >= 3;
    if ((fa == 0 || fa >= 3) && !cm_ok)
        fprintf(stderr, "loom: vulkan: LOOM_VK_FA=%s: no cooperative matrices (f16 16x16x16, subgroup size 32 or 64) "
                        "on %s or in this build; prefill attention stays on attn_fa.comp\n", fam, d->name);
    const char *fm = getenv("LOOM_VK_FUSE_MAX_NK");
    d->fuse_max_nk = fm && *fm ? strtoull(fm, NULL, 10) : UINT64_MAX;
    const char *gw = getenv("LOOM_VK_GEMV_WGS"), *gl = getenv("LOOM_VK_GEMV_LOADS");
    d->gemv_wgs = gw && atoi(gw) > 0 ? (uint32_t)atoi(gw) : 1024;
    d->gemv_loads = gl && (atoi(gl) == 2 || atoi(gl) == 4) ? (uint32_t)atoi(gl) : 0;
    d->gemv_u2 = env_flag("LOOM_VK_GEMV_U2"); /* half-pair K units: two a pass (matvec_dp.comp NU) */
    const char *agw = getenv("LOOM_VK_ATT_GW");
    /* (default 1: on the H100, session 16, llama-1.1b tg128 a query head a workgroup read 1.12-1.19x
     * the 8 of before, which left 4 workgroups a layer; docs/benchmarks.md) */
    d->att_gw = agw && atoi(agw) >= 1 && atoi(agw) <= 8 ? (uint32_t)atoi(agw) : 1;
    const char *rkv = getenv("LOOM_VK_RKV");
    d->no_rkv = rkv && *rkv == '0';
    /* LOOM_VK_MOE: the MOE op's expert products (vk_record.c rec_moe), for A/B runs. "auto" (unset):
     * the expert GEMVs (matvec.comp MOE) when a step routes at most VK_MOE_GEMV_SLOTS slots (rows x k)
     * and the device has subgroup arithmetic, else the slots grouped by expert (moe_group.comp) and
     * tiled per expert (matmul_q.comp MOE); "gemv", "mm": that one for every row count (gemv needs
     * subgroups: else mm); "naive": moe_mm.comp, a workgroup per output element and routed slot (the
     * path before session 16). Unknown: a line listing them, then auto. */
    static const struct {
        const char *name;
    } moe_modes[] = {{"auto"}, {"naive"}, {"gemv"}, {"mm"}};
    int mom = VK_KNOB_ENV("LOOM_VK_MOE", moe_modes, sizeof moe_modes / sizeof moe_modes[0], 0);
    d->moe = mom > 0 ? (uint32_t)mom : 0;
    /* LOOM_VK_GEMV_Q: the quantised decode GEMV for every block type, for A/B runs. "blk" (2 rows per
     * invocation), "blk1", "blk2", "blk4": matvec_qb.comp, a block at a time; "old" (unknown values
     * too, with a line that lists the values): matvec.comp. "dp", "dp1", "dp2", "dp4": matvec_dp.comp
     * (x quantised to 8 bits by quantx.comp, integer dot products) with 4 / 1 / 2 / 4 rows per
     * invocation; "dpa": 4, 2 or 1 rows per matrix, the most that leave it 1024 row groups
     * (vk_record.c). "qb": the block-at-a-time default of sessions 7-9 (qb_rows_default alone), for
     * A/B runs. Unset: on a GPU (not a CPU device such as lavapipe, whose tests keep the exact-x
     * GEMVs) with integer dot products, the 8-bit-x GEMV with 1 row for every block type. Session 10
     * (x quantised by quantx.comp) measured 2 rows fastest and kept Q8_0 / IQ4 off it; since the x is
     * quantised in its producers' epilogues (session 11) 1 row measured fastest for every type on the
     * H100 (2026-12-06, tg128 t/s, default of then -> dp1, docs/benchmarks.md): llama-1.1b Q8_0
     * 573-590 -> 630, IQ4_NL 482-488 -> 626, IQ4_XS 486-492 -> 630, Q6_K 430-439 -> 575, Q5_K_M
     * 473 -> 546, Q4_K_M 555-562 -> 605, Q5_1 588-605 -> 685; llama-7b Q8_0 161 -> 246, Q4_K_M
     * 240-241 -> 271-279 */
    static const struct {
        const char *name;
        uint32_t rows; /* vk_dev.gemv_q */
        bool dp, dpa;
    } gemv_q_modes[] = {{"old", 0, false, false},   {"qb", VK_GEMV_Q_AUTO, false, false},
                        {"blk", 2, false, false},   {"blk1", 1, false, false},
                        {"blk2", 2, false, false},  {"blk4", 4, false, false},
                        {"dp", 4, true, false},     {"dp1", 1, true, false},
                        {"dp2", 2, true, false},    {"dp4", 4, true, false},
                        {"dpa", 4, true, true}};
    const size_t n_gemv_q = sizeof gemv_q_modes / sizeof gemv_q_modes[0];
    int gqm = VK_KNOB_ENV("LOOM_VK_GEMV_Q", gemv_q_modes, n_gemv_q, 0);
    d->gemv_q = VK_GEMV_Q_AUTO;
    if (gqm >= 0) {
        d->gemv_q = gemv_q_modes[gqm].rows;
        d->gemv_dp = gemv_q_modes[gqm].dp;
        d->gemv_dp_auto = gemv_q_modes[gqm].dpa;
    }
    /* LOOM_VK_KUNIT: the unit of the Q4_K / Q5_K / Q6_K decode GEMVs, for A/B runs (vk_record.c
     * rec_matmul): "auto" (unset), "1", "2" (sub-blocks), "s13" (session 13's default: one sub-block on
     * rows K <= 2048, else two), "hp" (half-pair units on every matrix of the 8-bit-x GEMV) */
    static const struct {
        const char *name;
        vk_kunit v;
    } kunit_modes[] = {{"auto", VK_KUNIT_AUTO}, {"1", VK_KUNIT_1},   {"2", VK_KUNIT_2},
                       {"s13", VK_KUNIT_S13},   {"hp", VK_KUNIT_HP}};
    const size_t n_kunit = sizeof kunit_modes / sizeof kunit_modes[0];
    int kum = VK_KNOB_ENV("LOOM_VK_KUNIT", kunit_modes, n_kunit, 0);
    d->kunit = kum >= 0 ? kunit_modes[kum].v : VK_KUNIT_AUTO;
    d->gemv_dp_default = gqm < 0 && d->idot && d->props.deviceType != VK_PHYSICAL_DEVICE_TYPE_CPU;
    /* LOOM_VK_SPIN_US: how long a fence wait polls before it blocks (wait_fence). Unset: 5000 on a GPU
     * (H100, session 14, tg128 t/s, same lease: llama-1.1b +5-6% on every preset, e.g. q4_k_m 618 -> 652,
     * q4_0 719 -> 762; llama-7b Q4_K_M 279 -> 286), 0 on a CPU device such as lavapipe, whose own
     * threads would lose the core the poll takes */
    const char *sp = getenv("LOOM_VK_SPIN_US");
    unsigned long spv = sp && *sp ? strtoul(sp, NULL, 10)
                                  : d->props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU ? 0u : VK_SPIN_US_GPU;
    d->spin_us = (uint32_t)(spv < 1000000 ? spv : 1000000); /* at most a second */

    uint32_t nq = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(phys, &nq, NULL);
    VkQueueFamilyProperties qf[32];
    if (nq > 32) nq = 32;
    vkGetPhysicalDeviceQueueFamilyProperties(phys, &nq, qf);
    d->qfam = UINT32_MAX;
    for (uint32_t i = 0; i < nq; i++) /* a compute queue with timestamps first */
        if ((qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT) && qf[i].timestampValidBits) {
            d->qfam = i;
            break;
        }
    if (d->qfam == UINT32_MAX)
        for (uint32_t i = 0; i < nq; i++)
            if (qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT) {
                d->qfam = i;
                break;
            }
    d->timestamps = qf[d->qfam].timestampValidBits > 0 && d->props.limits.timestampPeriod > 0;

    float prio = 1.0f;
    VkDeviceQueueCreateInfo qi = {.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
                                  .queueFamilyIndex = d->qfam,
                                  .queueCount = 1,
                                  .pQueuePriorities = &prio};
    VkPhysicalDeviceCooperativeMatrixFeaturesKHR ecm = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_KHR, .cooperativeMatrix = VK_TRUE};
    if (d->cm2) ecm.pNext = &d->cm2f; /* LOOM_VK_CM2: + VK_NV_cooperative_matrix2, buffer references, 16-bit storage */
    VkPhysicalDeviceShaderIntegerDotProductFeaturesKHR eid = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_FEATURES_KHR,
        .pNext = d->coopmat ? &ecm : NULL,
        .shaderIntegerDotProduct = VK_TRUE};
    VkPhysicalDeviceVulkan12Features e12 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES,
                                            .pNext = d->idot ? (void *)&eid : d->coopmat ? (void *)&ecm : NULL,
                                            .shaderFloat16 = d->f16_storage || d->coopmat,
                                            .vulkanMemoryModel = d->coopmat,
                                            .vulkanMemoryModelDeviceScope = d->cm2 && f12.vulkanMemoryModelDeviceScope,
                                            .bufferDeviceAddress = d->cm2 != 0};
    VkPhysicalDeviceVulkan11Features e11 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES,
                                            .pNext = &e12,
                                            .storageBuffer16BitAccess = d->f16_storage || d->cm2};
    const char *dext[5];
    uint32_t nde = 0;
    if (d->has_budget) dext[nde++] = VK_EXT_MEMORY_BUDGET_EXTENSION_NAME;
    if (d->coopmat) dext[nde++] = VK_KHR_COOPERATIVE_MATRIX_EXTENSION_NAME;
    if (d->cm2) dext[nde++] = VK_NV_COOPERATIVE_MATRIX_2_EXTENSION_NAME;
    if (d->idot) dext[nde++] = VK_KHR_SHADER_INTEGER_DOT_PRODUCT_EXTENSION_NAME;
    if (d->pipe_stats) dext[nde++] = VK_KHR_PIPELINE_EXECUTABLE_PROPERTIES_EXTENSION_NAME;
    VkPhysicalDevicePipelineExecutablePropertiesFeaturesKHR epx = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PIPELINE_EXECUTABLE_PROPERTIES_FEATURES_KHR,
        .pNext = &e11,
        .pipelineExecutableInfo = VK_TRUE};
    VkDeviceCreateInfo di = {.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
                             .pNext = d->pipe_stats ? (void *)&epx : (void *)&e11,
                             .queueCreateInfoCount = 1,
                             .pQueueCreateInfos = &qi,
                             .enabledExtensionCount = nde,
                             .ppEnabledExtensionNames = dext};
    r = vkCreateDevice(phys, &di, NULL, &d->dev);
    if (r != VK_SUCCESS) {
        loom_err("vulkan: cannot open %s: vkCreateDevice failed: %s", d->name, vk_result_str(r));
        d->dev = VK_NULL_HANDLE;
        vk_dev_close(d);
        return NULL;
    }
    vkGetDeviceQueue(d->dev, d->qfam, 0, &d->queue);

    /* memory types: device-local for tensors; host-visible coherent (cached if possible) staging */
    d->mt_device = pick_memory_type(&d->mem, ~0u, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, 0);
    if (d->mt_device < 0) d->mt_device = pick_memory_type(&d->mem, ~0u, 0, 0);
    d->mt_upload = pick_memory_type(&d->mem, ~0u,
                                    VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT,
                                    VK_MEMORY_PROPERTY_HOST_CACHED_BIT);
    d->mt_download = d->mt_upload;
    if (d->mt_device < 0 || d->mt_upload < 0) {
        loom_err("vulkan: %s has no usable memory types", d->name);
        vk_dev_close(d);
        return NULL;
    }
    d->heap_device = (int)d->mem.memoryTypes[d->mt_device].heapIndex;

    VkCommandPoolCreateInfo cpi = {.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                                   .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
                                   .queueFamilyIndex = d->qfam};
    VkCommandBuffer cbs[4];
    VkCommandBufferAllocateInfo cai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                       .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                                       .commandBufferCount = 4};
    VkFenceCreateInfo fi = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    if ((r = vkCreateCommandPool(d->dev, &cpi, NULL, &d->cmdpool)) != VK_SUCCESS ||
        (cai.commandPool = d->cmdpool, r = vkAllocateCommandBuffers(d->dev, &cai, cbs)) != VK_SUCCESS ||
        (r = vkCreateFence(d->dev, &fi, NULL, &d->fence)) != VK_SUCCESS ||
        (r = vkCreateFence(d->dev, &fi, NULL, &d->once_fence)) != VK_SUCCESS ||
        (r = vkCreateFence(d->dev, &fi, NULL, &d->st_fence[0])) != VK_SUCCESS ||
        (r = vkCreateFence(d->dev, &fi, NULL, &d->st_fence[1])) != VK_SUCCESS) {
        loom_err("vulkan: setting up %s failed: %s", d->name, vk_result_str(r));
        vk_dev_close(d);
        return NULL;
    }
    d->cmd_once = cbs[0];
    d->cmd_pending = cbs[1];
    d->st_cmd[0] = cbs[2];
    d->st_cmd[1] = cbs[3];
    if (make_buffer(d, 256, d->mt_device, &d->dummy, &d->dummy_mem) < 0 || vk_pipelines_init(d) < 0) {
        loom_err_prefix("vulkan: %s", d->name);
        vk_dev_close(d);
        return NULL;
    }
    if (d->verbose)
        fprintf(stderr,
                "loom: vulkan: %s (%s), subgroup %u%s, f16 storage %s, coopmat %s%s%s%s%s%s%s, integer dot %s, max alloc "
                "%.0f MiB, max range %.0f MiB, prefill attention %s\n",
                d->name, vk_type_str(d->props.deviceType), d->subgroup_size,
                d->subgroup_arith ? " (arithmetic)" : "", d->f16_storage ? "yes" : "no", d->coopmat ? "yes" : "no",
                d->coopmat && d->cm_variant ? " variant " : "", d->coopmat && d->cm_variant ? vk_cm_variant_name(d->cm_variant) : "",
                d->cm2 ? ", coopmat2 " : "", d->cm2 ? vk_cm2_name(d) : "",
                d->cm_qtile ? ", quantised tiles in place (LOOM_VK_CM_QTILE)" : "",
                d->ksplit ? ", forced K splits (LOOM_VK_CM_KSPLIT)" : "", d->idot ? "yes" : "no", mib(d->max_alloc),
                mib(d->max_range),
                d->attn_cm ? (d->attn_cm_var == 1 ? "attn_cm cms (tensor cores)" : d->attn_cm_var == 2 ? "attn_cm cmp (tensor cores)" : d->attn_cm_var == 3 ? "attn_cm cmp8 (tensor cores)" : "attn_cm (tensor cores)") : d->no_fa ? "attention.comp" : "attn_fa");
    return d;
}

void vk_dev_close(vk_dev *d) {
    if (!d) return;
    if (d->dev) {
        vkDeviceWaitIdle(d->dev);
        vk_pipelines_free(d);
        if (d->st_map) vkUnmapMemory(d->dev, d->st_mem);
        drop_buffer(d, d->st_buf, d->st_mem);
        drop_buffer(d, d->dummy, d->dummy_mem);
        if (d->fence) vkDestroyFence(d->dev, d->fence, NULL);
        if (d->once_fence) vkDestroyFence(d->dev, d->once_fence, NULL);
        for (int h = 0; h < 2; h++)
            if (d->st_fence[h]) vkDestroyFence(d->dev, d->st_fence[h], NULL);
        if (d->cmdpool) vkDestroyCommandPool(d->dev, d->cmdpool, NULL);
        vkDestroyDevice(d->dev, NULL);
    }
    if (d->inst) vkDestroyInstance(d->inst, NULL);
    free(d);
}

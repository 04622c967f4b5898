/* loom devices: what loom can run on — the CPU, and each Vulkan device with its type, memory,
 * subgroup size and the features the Vulkan backend uses. */
#include "backends/backend.h"
#include "tools/commands.h"
#include "core/util.h"

#include <stdio.h>
#include <string.h>

int cmd_devices(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: loom devices\n\nLists the devices --device accepts: cpu, and vulkan:N for each Vulkan "
                   "device.\n`--device auto` picks a Vulkan GPU when there is one (never a software\n"
                   "implementation such as lavapipe), else the CPU.\n");
            return 0;
        }
        fprintf(stderr, "loom devices: unknown option '%s'\n", argv[i]);
        return 2;
    }
    loom_backend_opts o = {.device_index = -1};
    loom_backend *cpu = loom_cpu_backend_new(&o);
    if (cpu) {
        char desc[256] = "";
        if (cpu->ops->describe) cpu->ops->describe(cpu, desc, sizeof desc);
        printf("cpu  %s\n", desc[0] ? desc : "(host processor)");
        loom_backend_close(cpu);
    } else {
        printf("cpu  unavailable: %s\n", loom_last_error());
    }
#ifdef LOOM_HAVE_VULKAN
    int n = loom_vulkan_list_devices(stdout);
    if (n < 0) printf("vulkan: %s\n", loom_last_error());
    else if (n == 0) printf("vulkan: no device found\n");
    printf("auto -> %s\n", loom_vulkan_has_gpu() ? "vulkan (best GPU)" : "cpu");
#else
    printf("vulkan: not built (configure with Vulkan headers and glslangValidator)\nauto -> cpu\n");
#endif
    return 0;
}

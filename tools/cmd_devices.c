/* loom devices: what loom can run on — the CPU, and each Vulkan device with its type, memory,
 * subgroup size and the features the Vulkan backend uses. */
#include "backends/backend.h"
#include "tools/commands.h"
#include "tools/options.h"
#include "core/util.h"

#include <stdio.h>
#include <string.h>

int cmd_devices(int argc, char **argv) {
    const loom_opt opts[] = {LOOM_OPT_END};
    int prc = loom_opts_parse("devices", "",
                              "Lists the devices --device accepts: cpu, and vulkan:N for each Vulkan device.\n"
                              "`--device auto` picks a Vulkan GPU when there is one (never a software\n"
                              "implementation such as lavapipe), else the CPU.",
                              opts, NULL, argc, argv);
    if (prc >= 0) return prc;
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

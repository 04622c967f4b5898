#!/bin/sh
# vk_validate.sh CMD...: run CMD with the Khronos validation layer (synchronization validation on);
# fail on any validation message, skip (77) when the layer is not installed.
here=$(dirname "$0")
found=""
for d in /usr/share/vulkan/explicit_layer.d /usr/local/share/vulkan/explicit_layer.d /etc/vulkan/explicit_layer.d; do
    [ -f "$d/VkLayer_khronos_validation.json" ] && found=1
done
if [ -z "$found" ]; then
    echo "SKIP: the Khronos validation layer (vulkan-validationlayers) is not installed"
    exit 77
fi
# Under `make asan`, LeakSanitizer would report the validation layer's own C++ objects, which it
# leaks at exit: lsan_vk_layer.supp suppresses the leaks whose allocation passed through
# libVkLayer_khronos_validation.so (the layer's objects, and the driver's objects created through
# it, whose leaks the layer itself reports: "has not been destroyed", a VUID that fails the run);
# leak checking stays on for everything else, loom's own allocations included.
LSAN_OPTIONS="suppressions=$here/lsan_vk_layer.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export LSAN_OPTIONS
out=$(VK_INSTANCE_LAYERS=VK_LAYER_KHRONOS_validation VK_LAYER_SETTINGS_PATH="$here/vk_validation.txt" "$@" 2>&1)
rc=$?
printf '%s\n' "$out"
if printf '%s\n' "$out" | grep -Eq 'Validation (Error|Warning)|VUID-|SYNC-HAZARD'; then
    echo "FAIL: the validation layer reported problems"
    exit 1
fi
exit $rc

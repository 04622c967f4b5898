# Sourced by the GPU-machine scripts beside it (gpu_types.sh, gpu_cm_variants.sh,
# gpu_gemv_variants.sh), from the repo root: unpacks the carried Vulkan loader (.gl/*.deb), points
# the loader at the NVIDIA driver where the image does not, and unpacks the carried loom pack
# (.gpu-cm/loom.tar.xz, made by gpu_types_pack.sh) into $L (PACK_DIR, default /tmp/loom-pack) when
# it is newer than the copy there. Sets L and LD_LIBRARY_PATH.
for f in .gl/*.deb; do [ -f "$f" ] && dpkg -x "$f" /; done
ldconfig 2>/dev/null
if ! ls /usr/share/vulkan/icd.d/*nvidia* /etc/vulkan/icd.d/*nvidia* >/dev/null 2>&1 &&
    [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
L=${PACK_DIR:-/tmp/loom-pack}
if [ -f .gpu-cm/loom.tar.xz ] && { [ ! -x "$L/loom" ] || [ .gpu-cm/loom.tar.xz -nt "$L/loom" ]; }; then
    rm -rf "$L" && mkdir -p "$L" && tar xJf .gpu-cm/loom.tar.xz -C "$L"
fi
export LD_LIBRARY_PATH=$L/lib

#!/bin/sh
# rel_ro_cache.sh LOOM FIXTURES: with XDG_CACHE_HOME a read-only folder, `loom check --device vulkan`
# still passes and warns once that the pipeline cache is off. Root ignores permissions, so as root
# the command runs with every capability dropped (setpriv). Skipped (77) without a Vulkan device.
loom=$1
fx=$2
if ! "$loom" devices 2>/dev/null | grep -q '^vulkan:[0-9]'; then
    echo "SKIP: no Vulkan device"
    exit 77
fi
tmp=$(mktemp -d) || exit 1
trap 'chmod -R u+w "$tmp"; rm -rf "$tmp"' EXIT
mkdir "$tmp/ro"
chmod 555 "$tmp/ro"
run=""
if [ "$(id -u)" -eq 0 ]; then
    if ! command -v setpriv >/dev/null; then
        echo "SKIP: root ignores folder permissions and setpriv is not installed"
        exit 77
    fi
    run="setpriv --bounding-set=-all --inh-caps=-all"
fi
if $run mkdir "$tmp/ro/probe" 2>/dev/null; then
    echo "SKIP: cannot make a read-only folder here (root without setpriv?)"
    exit 77
fi
# Mesa's shader cache stays where it was (it would follow XDG_CACHE_HOME into the read-only folder):
# with it off too lavapipe compiles every pipeline from scratch, ~5x the test's time (30 s under
# ASan) for no loom code; loom's own cache is what this test is about.
mesa_cache=${MESA_SHADER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mesa_shader_cache}
out=$(MESA_SHADER_CACHE_DIR="$mesa_cache" XDG_CACHE_HOME="$tmp/ro" LOOM_VK_NO_CACHE= $run "$loom" check -m "$fx/qwen2-tiny" \
      --reference "$fx/qwen2-tiny/reference.safetensors" --device vulkan 2>&1)
rc=$?
echo "$out"
if [ $rc -ne 0 ]; then echo "FAIL: exit $rc"; exit 1; fi
n=$(printf '%s\n' "$out" | grep -c "warning: vulkan pipeline cache disabled: cannot create $tmp/ro/loom")
if [ "$n" -ne 1 ]; then echo "FAIL: expected one pipeline-cache warning, got $n"; exit 1; fi
echo "ok: passed with the cache disabled"

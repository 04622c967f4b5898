#!/bin/sh
# Install the Debian 12 packages loom needs to build and test (graphviz: `dot`, for the dump_svg test). Idempotent: does nothing when all
# are present. Run as root (or with sudo available).
set -e
PKGS="build-essential cmake pkg-config libvulkan-dev glslang-tools libxxhash-dev libcjson-dev
libpcre2-dev libutf8proc-dev mesa-vulkan-drivers vulkan-validationlayers xz-utils graphviz
libmicrohttpd-dev libedit-dev curl nodejs ninja-build"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "loom: installing Debian packages:$missing" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
# The official openai npm package for the loom serve test (tests/scripts/serve_openai.mjs), into
# .npm-deps/ beside this repository's build folders. Not fatal: without it that test is skipped.
root=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -f "$root/.npm-deps/node_modules/openai/package.json" ] && command -v npm >/dev/null 2>&1; then
    echo "loom: installing the openai npm package into .npm-deps" >&2
    npm install --prefix "$root/.npm-deps" --no-audit --no-fund --silent openai@4 >&2 ||
        echo "loom: npm install openai failed; the serve_openai test will be skipped" >&2
fi
exit 0

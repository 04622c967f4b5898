#!/bin/sh
# Install the Debian 12 packages loom needs to build and test (graphviz: `dot`, for the dump_svg test). Idempotent: does nothing when all
# are present. Run as root (or with sudo available).
set -e
PKGS="build-essential cmake pkg-config libvulkan-dev glslang-tools libxxhash-dev libcjson-dev
libpcre2-dev libutf8proc-dev mesa-vulkan-drivers vulkan-validationlayers xz-utils graphviz"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "loom: installing Debian packages:$missing" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $missing

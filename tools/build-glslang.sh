#!/bin/sh
# Builds glslang 15 (Debian 13 "trixie" source package) into a prefix outside the repo, for GPU
# builds that want cooperative-matrix shaders (GL_KHR_cooperative_matrix). Debian 12's glslang
# 12 cannot compile them. Optional: CI and lavapipe never need it (lavapipe has no coopmat).
# The system's apt configuration is left alone: a private sources list and state dir are used, on
# the Debian mirror the system's own apt sources name (DEBIAN_MIRROR=URL overrides it).
# Usage: tools/build-glslang.sh [PREFIX]   (default /work/glslang15)
# Then:  cmake -S . -B build-vk -DLOOM_GLSLANG=PREFIX/bin/glslangValidator
set -eu
prefix=${1:-/work/glslang15}
work=${GLSLANG_WORK:-/tmp/glslang-src}
jobs=${JOBS:-2}
mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
# the first non-security Debian archive in the system's sources (deb822 .sources or one-line .list)
mirror=${DEBIAN_MIRROR:-$( {
    grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | sed 's/^URIs:[[:space:]]*//' | tr ' ' '\n'
    grep -hs '^deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
      sed 's/\[[^]]*\][[:space:]]*//' | awk '{print $2}'
  } | grep -v security | grep '/debian/*$' | head -1)}
if [ -z "$mirror" ]; then
    echo "build-glslang.sh: no Debian mirror in /etc/apt/sources.list*; set DEBIAN_MIRROR=URL" >&2
    exit 1
fi
echo "deb-src $mirror trixie main" >"$work/trixie.list"
apt_opts="-o Dir::Etc::SourceList=$work/trixie.list -o Dir::Etc::SourceParts=/dev/null
  -o Dir::State::Lists=$work/lists -o Dir::Cache=$work/cache"
# shellcheck disable=SC2086
apt-get $apt_opts update
cd "$work"
# shellcheck disable=SC2086
[ -d "$work"/glslang-*/ ] || apt-get $apt_opts source --download-only glslang
# --skip-patches: Debian's patches are pkg-config packaging and break the ENABLE_OPT=OFF configure
[ -d "$(ls -d "$work"/glslang-*/ 2>/dev/null | head -1)" ] || dpkg-source --skip-patches -x "$work"/glslang_*.dsc
src=$(ls -d "$work"/glslang-*/ | head -1)
# ENABLE_OPT=OFF: no SPIRV-Tools needed (no optimiser, no validator); plain -V output is enough.
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$prefix" \
  -DENABLE_OPT=OFF -DGLSLANG_TESTS=OFF -DBUILD_SHARED_LIBS=OFF -DENABLE_HLSL=OFF \
  -DBUILD_EXTERNAL=OFF
cmake --build "$work/build" -j"$jobs"
cmake --install "$work/build"
"$prefix/bin/glslangValidator" --version | head -1

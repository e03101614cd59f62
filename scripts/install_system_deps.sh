#!/usr/bin/env bash
# System libraries that Blender-as-a-module (bpy 5.0.1) loads, and the tools `datagen assets`
# uses to fetch meshes (apt-get download, dpkg -x). Installs what is missing when run as root
# on Debian/Ubuntu; otherwise prints the command to run.
set -euo pipefail
declare -A LIBS=(
  [libGL.so.1]=libgl1 [libGLX.so.0]=libglx0 [libGLdispatch.so.0]=libglvnd0 [libEGL.so.1]=libegl1
  [libX11.so.6]=libx11-6 [libXext.so.6]=libxext6 [libXfixes.so.3]=libxfixes3 [libXi.so.6]=libxi6
  [libXrender.so.1]=libxrender1 [libXxf86vm.so.1]=libxxf86vm1 [libxcb.so.1]=libxcb1
  [libxkbcommon.so.0]=libxkbcommon0 [libSM.so.6]=libsm6 [libICE.so.6]=libice6 [libbsd.so.0]=libbsd0
)
missing=()
for lib in "${!LIBS[@]}"; do
  ldconfig -p 2>/dev/null | grep -qE "^[[:space:]]+${lib//./\\.} " || missing+=("${LIBS[$lib]}")
done
command -v dpkg >/dev/null || missing+=(dpkg)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "system packages needed by bpy: ${missing[*]}"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
else
  echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi

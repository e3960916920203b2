#!/usr/bin/env bash
# Builds hrm and runs its ctest suite against LibTorch 2.x (Debian 13 "trixie" ships libtorch-dev 2.6) inside a
# debootstrap'ed trixie root, so the 2.x code paths (SDPA, the >= 2.3 allocator signature, the new profiler
# headers) are compiled and tested on a Debian 12 machine without touching the host's LibTorch 1.13.
# Needs root (debootstrap, chroot, bind mounts) and ~4 GB of disk. Not part of scripts/test.sh: the first run
# downloads ~1 GB and takes 10-15 min; later runs reuse the root and the build folder.
#   HRM_TRIXIE_ROOT  where the root lives (default /var/tmp/hrm-trixie)
#   CTEST_ARGS       extra ctest arguments (e.g. "-R Reference")
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
SHARED=$(cd "$REPO/.." && pwd)/shared
ROOT=${HRM_TRIXIE_ROOT:-/var/tmp/hrm-trixie}
MIRROR=${HRM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES="build-essential cmake pkg-config libtorch-dev libopenblas0-pthread libyaml-cpp-dev libspdlog-dev \
libcli11-dev libgtest-dev nlohmann-json3-dev qqwing python3"

if [ "$(id -u)" -ne 0 ]; then echo "check-libtorch2: needs root (debootstrap + chroot)" >&2; exit 2; fi
command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap

if [ ! -e "$ROOT/.hrm-ready" ]; then
  echo "check-libtorch2: creating trixie root in $ROOT"
  debootstrap --variant=minbase trixie "$ROOT" "$MIRROR"
  chroot "$ROOT" /usr/bin/env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $PACKAGES
  touch "$ROOT/.hrm-ready"
fi

mkdir -p "$ROOT/w/main" "$ROOT/w/shared" "$ROOT/w/build" "$ROOT/proc"
cleanup() {
  for m in "$ROOT/w/shared" "$ROOT/proc" "$ROOT/dev"; do
    mountpoint -q "$m" && umount -l "$m" || true
  done
}
trap cleanup EXIT
mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
mountpoint -q "$ROOT/dev" || mount --bind /dev "$ROOT/dev"
# A snapshot of the working tree (tracked + untracked, not ignored): edits made while it builds do not leak in.
rm -rf "$ROOT/w/main" && mkdir -p "$ROOT/w/main"
(cd "$REPO" && git ls-files -co --exclude-standard -z | xargs -0 tar -cf - 2>/dev/null) | tar -xf - -C "$ROOT/w/main"
if [ -d "$SHARED" ]; then mount --bind -o ro "$SHARED" "$ROOT/w/shared"; fi

chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root CTEST_ARGS="${CTEST_ARGS:-}" bash -c '
  set -euo pipefail
  echo "check-libtorch2: $(dpkg-query -W -f="libtorch-dev \${Version}" libtorch-dev), $(g++ --version | head -1)"
  cmake -S /w/main -B /w/build -DCMAKE_BUILD_TYPE=Release
  cmake --build /w/build -j "$(nproc)"
  cd /w/build && ctest --output-on-failure $CTEST_ARGS'

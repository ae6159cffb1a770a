#!/usr/bin/env bash
# Tests callm on aarch64 from an x86-64 Debian host (scripts/test.sh runs it last).
#
# The tests are built for aarch64-unknown-linux-gnu in a Debian sid chroot, because sid packages
# the aarch64 Rust standard library (libstd-rust-dev:arm64) and the cross linker. They then run
# on this host under qemu-user:
#   1. the unit tests of callm and of its kernel crate (crates/callm-kernels) on an emulated CPU
#      with every extension (-cpu max). The NEON kernels with sdot and those without both run
#      against the scalar reference and candle;
#   2. the 32-value and IQ4 kernel tests on an Armv8.0 CPU without sdot (-cpu cortex-a72). This shows
#      the run-time detection picks the plain NEON kernels there. candle's own K-quant matmul
#      uses sdot unconditionally, so its comparison tests cannot run on that CPU;
#   3. the tiny-model goldens against transformers, and the real-GGUF numerics test on SmolLM2
#      (Q4_1 through the NEON kernels), with -cpu max.
#
# Needs root (debootstrap, chroot, bind mounts), the Debian package registry and ~4 GB of disk
# (~1.5 GB once the chroot exists). Where the environment cannot provide them, it says why and
# exits 0: the x86 tests have run. A failed
# build or test exits non-zero.
#
# Chroot: $CALLM_AARCH64_ROOT, default ~/.cache/callm/aarch64-sid (outside the repo, reused).
# Builds go to target/aarch64. Set CALLM_SKIP_AARCH64=1 to skip.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd -P)
root="${CALLM_AARCH64_ROOT:-$HOME/.cache/callm/aarch64-sid}"
mirror="${CALLM_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
triple=aarch64-unknown-linux-gnu

skip() {
  echo "aarch64 tests skipped: $*" >&2
  exit 0
}

[ -z "${CALLM_SKIP_AARCH64:-}" ] || skip "CALLM_SKIP_AARCH64 is set"
[ "$(uname -m)" = x86_64 ] || skip "the host is $(uname -m); these tests cross-build from x86_64"
[ "$(id -u)" = 0 ] || skip "debootstrap, chroot and bind mounts need root"
command -v apt-get >/dev/null || skip "no apt-get: the chroot is built from Debian packages"

# --- disk: the chroot takes ~1.7 GB (~2.2 GB while installing), the aarch64 build ~1.1 GB -----
free_mb() { # path: megabytes free on its filesystem (of the nearest existing parent)
  local p="$1"
  while [ ! -e "$p" ]; do p=$(dirname "$p"); done
  df -Pm "$p" | awk 'NR == 2 { print $4 }'
}
need_mb=1500
[ -f "$root/.callm-ready" ] || need_mb=$((need_mb + 2500))
for p in "$root" "$repo/target"; do
  have=$(free_mb "$p")
  [ "$have" -ge "$need_mb" ] ||
    skip "only $have MB free for $p, and the chroot and cross build need about $need_mb MB"
done

# --- the chroot (once) -------------------------------------------------------------------------
if ! command -v debootstrap >/dev/null || ! command -v qemu-aarch64-static >/dev/null; then
  echo "aarch64: installing debootstrap and qemu-user-static"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap qemu-user-static >/dev/null ||
    skip "cannot install debootstrap and qemu-user-static"
fi
if [ ! -f "$root/.callm-ready" ]; then
  echo "aarch64: building a Debian sid chroot in $root (a few minutes)"
  # Only a chroot this script started is ever removed.
  if [ -e "$root" ] && [ ! -f "$root/.callm-partial" ]; then
    skip "$root exists and was not made by this script; set CALLM_AARCH64_ROOT"
  fi
  if grep -q " $root/" /proc/mounts; then
    skip "$root has mounts left from an interrupted run; unmount them first"
  fi
  rm -rf --one-file-system "$root"
  mkdir -p "$root"
  touch "$root/.callm-partial"
  debootstrap --variant=minbase sid "$root" "$mirror" >/dev/null || skip "debootstrap of sid failed"
  # A mirror may serve a frozen snapshot whose Release file has expired.
  echo 'Acquire::Check-Valid-Until "false";' >"$root/etc/apt/apt.conf.d/99callm"
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  chroot "$root" dpkg --add-architecture arm64
  chroot "$root" apt-get update -qq >/dev/null || skip "apt-get update in the chroot failed"
  DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y -qq --no-install-recommends \
    rustc cargo libstd-rust-dev:arm64 gcc-aarch64-linux-gnu g++-aarch64-linux-gnu >/dev/null ||
    skip "cannot install the cross toolchain in the chroot"
  chroot "$root" apt-get clean # the downloaded .deb files (~500 MB)
  rm "$root/.callm-partial"
  touch "$root/.callm-ready"
fi

# --- mounts: the repo at its own path (so the binaries run on the host with the same paths) ----
# A run that was interrupted (its cleanup never ran) leaves its bind mounts in this script's own
# chroot, some onto directories deleted since: take them down, deepest first.
for m in $(awk -v r="$root/" 'index($2, r) == 1 {print $2}' /proc/mounts | sort -r); do
  echo "aarch64: unmounting $m, left by an interrupted run"
  umount -l "$m" || skip "cannot unmount $m, left by an interrupted run"
done
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
mounted=()
cleanup() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
bind() { # source target
  mkdir -p "$2"
  mount --bind "$1" "$2" || skip "cannot bind-mount $1 into the chroot"
  mounted+=("$2")
}
bind /proc "$root/proc"
bind /dev "$root/dev"
bind "$repo" "$root$repo"
mkdir -p "$cargo_home/registry"
bind "$cargo_home/registry" "$root/root/.cargo/registry"

# --- build -------------------------------------------------------------------------------------
mkdir -p "$repo/target"
echo "aarch64: building the tests for $triple ($(chroot "$root" rustc --version))"
upper=$(echo "$triple" | tr 'a-z-' 'A-Z_')
lower=$(echo "$triple" | tr '-' '_')
chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root CARGO_HOME=/root/.cargo \
  CARGO_TARGET_DIR="$repo/target/aarch64" CARGO_INCREMENTAL=0 \
  "CARGO_TARGET_${upper}_LINKER=aarch64-linux-gnu-gcc" \
  "CC_${lower}=aarch64-linux-gnu-gcc" "CXX_${lower}=aarch64-linux-gnu-g++" \
  "AR_${lower}=aarch64-linux-gnu-ar" \
  bash -c "cd '$repo' && cargo test --locked --target $triple --no-run --workspace --lib \
    --test tiny_models --test kernels_numerics --message-format=json-render-diagnostics" \
  >"$repo/target/aarch64-build.json"
bins=$(python3 - "$repo/target/aarch64-build.json" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["target"]["name"], m["executable"])
EOF
)
bin() { echo "$bins" | awk -v n="$1" '$1 == n { print $2 }'; }
lib=$(bin callm)
kernels=$(bin callm_kernels)
tiny=$(bin tiny_models)
numerics=$(bin kernels_numerics)
[ -n "$lib" ] && [ -n "$kernels" ] && [ -n "$tiny" ] && [ -n "$numerics" ] ||
  { echo "aarch64: test binaries missing" >&2; exit 1; }

# --- run ---------------------------------------------------------------------------------------
qemu() { # cpu binary args...
  local cpu="$1"
  shift
  qemu-aarch64-static -cpu "$cpu" -L "$root/usr/aarch64-linux-gnu" "$@"
}
echo "aarch64: unit tests (-cpu max: NEON with and without sdot)"
qemu max "$lib" -q
qemu max "$kernels" -q
echo "aarch64: packed kernel tests on an Armv8.0 CPU (-cpu cortex-a72, no sdot)"
qemu cortex-a72 "$kernels" -q tests::blocks:: tests::iq::
echo "aarch64: tiny-model goldens"
qemu max "$tiny" -q
echo "aarch64: real-GGUF numerics (SmolLM2 Q4_1)"
CALLM_NUMERICS_MODELS=SmolLM2-135M-Instruct.Q4_1.gguf qemu max "$numerics" -q
echo "aarch64: all passed"

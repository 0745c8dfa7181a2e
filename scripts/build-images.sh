#!/usr/bin/env bash
# Builds the lab image from a clean clone: the four node binaries statically linked
# (glibc, `-C target-feature=+crt-static` on x86_64-unknown-linux-gnu), Debian's
# busybox-static (sh, ping, httpd, wget, ...) and iproute2's `ip` with its libraries, in
# one `FROM scratch` image, `pmip-s2b-lab`. One image for every service: the binaries
# share one build and one layer cache, and a service is just a command.
# No container registry is needed. Idempotent and fast on re-run: cargo rebuilds only what
# changed (in its own target dir, target/static, so the debug builds in target/ stay
# valid) and docker reuses its layer cache when the binaries are unchanged.
#
# Environment: LAB_IMAGE (default pmip-s2b-lab:latest), CARGO_TARGET_DIR_STATIC (default
# target/static), LAB_PROFILE (default release).
set -euo pipefail
cd "$(dirname "$0")/.."

image="${LAB_IMAGE:-pmip-s2b-lab:latest}"
target_dir="${CARGO_TARGET_DIR_STATIC:-$PWD/target/static}"
profile="${LAB_PROFILE:-release}"
triple=x86_64-unknown-linux-gnu
busybox=/bin/busybox

command -v docker >/dev/null || { echo "build-images: docker is not installed" >&2; exit 1; }
if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "ok installed"; then
  echo "build-images: Debian's busybox-static is not installed; run scripts/setup.sh" >&2
  exit 1
fi
if ! rustup target list --installed 2>/dev/null | grep -qx "$triple"; then
  rustup target add "$triple"
fi

echo "build-images: static binaries ($profile, $target_dir)"
# --target keeps RUSTFLAGS away from build scripts and proc macros (they stay dynamic);
# no debug info: smaller images, faster links.
RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR="$target_dir" \
  CARGO_PROFILE_RELEASE_DEBUG=0 \
  cargo build --locked --profile "$profile" --target "$triple" \
  --bin lma --bin mag --bin aaa-stub --bin ue-emu

out="$target_dir/$triple/$profile"
context="$target_dir/image-context"
mkdir -p "$context"
for bin in lma mag aaa-stub ue-emu; do
  # cp -p keeps the mtime, so an unchanged binary keeps docker's cache valid.
  cmp -s "$out/$bin" "$context/$bin" 2>/dev/null || cp -p "$out/$bin" "$context/$bin"
done
cmp -s "$busybox" "$context/busybox" 2>/dev/null || cp -p "$busybox" "$context/busybox"

# iproute2's `ip` (Debian, dynamically linked) with the libraries ldd names, under
# iproute2/ in the context: `ue-emu --tun` (addrgenmode) and the lma's IPv6 TUN address
# (nodad) need more than busybox's ip. Paths are kept, so its loader finds them.
ip_bin="$(readlink -f "$(command -v ip)")"
stage="$context/iproute2.new"
rm -rf "$stage"
mkdir -p "$stage/usr/local/bin"
cp -p "$ip_bin" "$stage/usr/local/bin/ip"
for lib in $(ldd "$ip_bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
  mkdir -p "$stage$(dirname "$lib")"
  cp -pL "$lib" "$stage$lib"
done
if [ -d "$context/iproute2" ] && diff -r "$stage" "$context/iproute2" >/dev/null 2>&1; then
  rm -rf "$stage"
else
  rm -rf "$context/iproute2"
  mv "$stage" "$context/iproute2"
fi
cp lab/Dockerfile "$context/Dockerfile"

echo "build-images: docker image $image"
docker build --quiet --tag "$image" "$context" >/dev/null
# The image has no libc: a binary that is not static fails to start here.
if ! docker run --rm --network none "$image" \
  sh -c 'lma --version && mag --version && aaa-stub --version && ue-emu --version && /usr/local/bin/ip -V' \
  >/dev/null 2>&1; then
  echo "build-images: the binaries do not run in $image (not statically linked?)" >&2
  exit 1
fi
docker image inspect --format 'build-images: {{.RepoTags}} {{.Id}} {{.Size}} bytes' "$image"

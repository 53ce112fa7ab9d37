#!/usr/bin/env bash
# Builds the node's container image locally from a compiled `backflow` binary: FROM scratch
# with the binary, the shared libraries `ldd` lists and the dynamic loader. No base image is
# pulled (none can be, on the CI machines), so this works offline.
#
# usage: tests/image/build.sh [BINARY] [IMAGE:TAG]
#   BINARY     default: $CARGO_TARGET_DIR/debug/backflow (or target/debug/backflow)
#   IMAGE:TAG  default: backflow-node:test
# The image carries the label backflow.binary=<blake3/sha256 of the binary>; the test harness
# rebuilds only when that label differs from the binary at hand.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="${1:-${CARGO_TARGET_DIR:-$root/target}/debug/backflow}"
tag="${2:-backflow-node:test}"
label="${BACKFLOW_BINARY_ID:-$(sha256sum "$bin" | cut -d' ' -f1)}"

[ -x "$bin" ] || { echo "build.sh: no executable at $bin; run: cargo build -p backflow-node --bin backflow" >&2; exit 2; }

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/rootfs/data" "$ctx/rootfs/tmp"
# Debug info is useless in the container and makes the build context huge.
if command -v objcopy >/dev/null; then
    objcopy --strip-debug "$bin" "$ctx/rootfs/backflow"
else
    cp "$bin" "$ctx/rootfs/backflow"
fi
# Every library ldd resolves, and the loader (the line without "=>").
ldd "$bin" | grep -o '/[^ ]*' | sort -u | while read -r lib; do
    mkdir -p "$ctx/rootfs$(dirname "$lib")"
    cp -L "$lib" "$ctx/rootfs$lib"
done
cat > "$ctx/Dockerfile" <<DOCKERFILE
FROM scratch
COPY rootfs/ /
LABEL backflow.binary="$label"
ENV RUST_LOG=info
WORKDIR /data
ENTRYPOINT ["/backflow"]
CMD ["run", "--data", "/data"]
DOCKERFILE
# The legacy builder needs no BuildKit frontend image (which could not be pulled).
DOCKER_BUILDKIT=0 docker build --quiet --tag "$tag" "$ctx" >/dev/null
echo "built $tag from $bin"

#!/usr/bin/env bash
# Builds SeaweedFS's `weed` (the S3-compatible object store the object-store tests run on loopback)
# from the github.com/seaweedfs/seaweedfs module pinned in ./go.mod (wrapper module; the module
# proxy serves only that pseudo-version) into OUT_DIR/weed (default
# ~/.cache/crypt4gh-sidecar/seaweedfs/bin). Static (CGO_ENABLED=0).
#
# Idempotent: OUT_DIR/STAMP records the module version and the Go version; when it matches, nothing
# is rebuilt. Concurrent runs are serialised with flock(1) on OUT_DIR/.lock. The binary is built to
# a temporary name and renamed, so an interrupted build never leaves one that looks complete.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-${HOME}/.cache/crypt4gh-sidecar/seaweedfs/bin}"

# The required version, whether in a `require (...)` block or on one `require` line.
version="$(awk '/^[[:space:]]*\/\//{next} {for (i = 1; i < NF; i++) if ($i == "github.com/seaweedfs/seaweedfs") {print $(i + 1); exit}}' "$here/go.mod")"
if [[ -z "$version" ]]; then
    echo "cannot read the pinned SeaweedFS version from $here/go.mod" >&2
    exit 1
fi
stamp="weed ${version} $(go env GOVERSION)"

mkdir -p "$out"
exec 9>"$out/.lock"
flock 9

if [[ -f "$out/STAMP" && "$(cat "$out/STAMP")" == "$stamp" && -x "$out/weed" ]]; then
    echo "SeaweedFS up to date in $out ($stamp)"
    exit 0
fi
rm -f "$out/STAMP"
started="$SECONDS"
echo "building weed (github.com/seaweedfs/seaweedfs ${version}) into $out"
(cd "$here" && CGO_ENABLED=0 go build -trimpath -mod=readonly -ldflags="-s -w" \
    -o "$out/.weed.part" github.com/seaweedfs/seaweedfs/weed)
mv -f "$out/.weed.part" "$out/weed"
echo "$stamp" > "$out/.STAMP.part"
mv -f "$out/.STAMP.part" "$out/STAMP"
echo "built weed in $((SECONDS - started)) s ($stamp)"

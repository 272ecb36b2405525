#!/usr/bin/env bash
# Builds the real NeIC SDA v2 download and reencrypt services for tests/tests/sda.rs from the
# pinned source snapshot ../shared/peers/sda/sda-svc-3.4.3.tar.gz (unmodified; the Go module proxy
# cannot serve it because the module lives in a subdirectory; its dependencies come from the
# proxy). Unpacks into OUT_DIR/src, builds OUT_DIR/bin/{download,reencrypt}.
#
# Usage: build.sh TARBALL OUT_DIR. Idempotent: OUT_DIR/STAMP records the tarball's sha-256 and the
# Go version; when it matches, nothing is rebuilt. Serialised with flock(1) on OUT_DIR/.lock.
# Binaries are built to temporary names and renamed, so an interrupted build never leaves a
# binary that looks complete.
set -euo pipefail

tarball="$1"
out="$2"
if [[ ! -f "$tarball" ]]; then
    echo "SDA source snapshot $tarball is missing (see ../shared/peers/README.md)" >&2
    exit 1
fi
sum="$(sha256sum "$tarball" | cut -d' ' -f1)"
stamp="sda ${sum} $(go env GOVERSION)"

mkdir -p "$out"
exec 9>"$out/.lock"
flock 9

if [[ -f "$out/STAMP" && "$(cat "$out/STAMP")" == "$stamp" ]] \
    && [[ -x "$out/bin/download" && -x "$out/bin/reencrypt" && -d "$out/src/postgresql/initdb.d" ]]; then
    echo "SDA services up to date in $out"
    exit 0
fi
rm -f "$out/STAMP"
rm -rf "$out/src" "$out/.src.part"
mkdir -p "$out/.src.part" "$out/bin"
tar -xzf "$tarball" -C "$out/.src.part"
mv "$out/.src.part" "$out/src"
for cmd in download reencrypt; do
    echo "building SDA $cmd into $out/bin"
    (cd "$out/src/sda" && CGO_ENABLED=0 go build -trimpath -mod=readonly -o "$out/bin/.$cmd.part" "./cmd/$cmd")
    mv -f "$out/bin/.$cmd.part" "$out/bin/$cmd"
done
echo "$stamp" > "$out/.STAMP.part"
mv -f "$out/.STAMP.part" "$out/STAMP"
echo "SDA services built in $out ($stamp)"

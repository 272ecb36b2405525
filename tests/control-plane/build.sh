#!/usr/bin/env bash
# Builds the local control plane used by the end-to-end tests: kube-apiserver,
# kube-controller-manager and kubectl (server-side apply of manifests/ with kustomize) from the
# k8s.io/kubernetes module (wrapper module ./kubernetes) and etcd (wrapper module ./etcd), into
# OUT_DIR (default ~/.cache/crypt4gh-sidecar/control-plane/bin).
#
# Idempotent: OUT_DIR/STAMP records what was built; when it matches, nothing is rebuilt.
# Concurrent runs are serialised with flock(1) on OUT_DIR/.lock.
# Each binary is built to a temporary name and renamed, so an interrupted build never leaves a
# binary that looks complete.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-${HOME}/.cache/crypt4gh-sidecar/control-plane/bin}"

# The version a go.mod requires of module $2, whether in a `require (...)` block or on one line.
required() {
    awk -v m="$2" '/^[[:space:]]*\/\//{next} {for (i = 1; i < NF; i++) if ($i == m) {print $(i + 1); exit}}' "$1"
}
k8s_version="$(required "$here/kubernetes/go.mod" k8s.io/kubernetes)"
etcd_version="$(required "$here/etcd/go.mod" go.etcd.io/etcd/server/v3)"
if [[ -z "$k8s_version" || -z "$etcd_version" ]]; then
    echo "cannot read the pinned versions from $here/*/go.mod" >&2
    exit 1
fi
go_version="$(go env GOVERSION)"
stamp="kube-apiserver kube-controller-manager kubectl ${k8s_version} etcd ${etcd_version} ${go_version}"

mkdir -p "$out"
# One build at a time: concurrent `cargo xtask setup` runs wait here, then find the stamp.
exec 9>"$out/.lock"
flock 9

if [[ -f "$out/STAMP" && "$(cat "$out/STAMP")" == "$stamp" ]] \
    && [[ -x "$out/kube-apiserver" && -x "$out/kube-controller-manager" && -x "$out/kubectl" && -x "$out/etcd" ]]; then
    echo "control plane up to date in $out ($stamp)"
    exit 0
fi

rm -f "$out/STAMP"

minor="${k8s_version#v1.}"
minor="${minor%%.*}"
version_pkg="k8s.io/component-base/version"
k8s_ldflags="-s -w -X ${version_pkg}.gitVersion=${k8s_version} -X ${version_pkg}.gitMajor=1"
k8s_ldflags+=" -X ${version_pkg}.gitMinor=${minor} -X ${version_pkg}.gitTreeState=clean"

build() {
    local dir="$1" pkg="$2" name="$3" ldflags="$4"
    echo "building $name ($pkg) into $out"
    (cd "$here/$dir" && CGO_ENABLED=0 go build -trimpath -mod=readonly -ldflags="$ldflags" \
        -o "$out/.$name.part" "$pkg")
    mv -f "$out/.$name.part" "$out/$name"
}

build kubernetes k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver "$k8s_ldflags"
build kubernetes k8s.io/kubernetes/cmd/kube-controller-manager kube-controller-manager "$k8s_ldflags"
build kubernetes k8s.io/kubernetes/cmd/kubectl kubectl "$k8s_ldflags"
build etcd . etcd "-s -w"

echo "$stamp" > "$out/.STAMP.part"
mv -f "$out/.STAMP.part" "$out/STAMP"
echo "control plane built in $out ($stamp)"

#!/usr/bin/env bash
# Builds the local control plane and node used by the end-to-end tests: kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet and kubectl (server-side apply of manifests/
# with kustomize) from the k8s.io/kubernetes module (wrapper module ./kubernetes), etcd (wrapper
# module ./etcd), and containerd, containerd-shim-runc-v2 and ctr from the
# github.com/containerd/containerd/v2 module (wrapper module ./containerd), into OUT_DIR (default
# ~/.cache/crypt4gh-sidecar/control-plane/bin). Every binary is static (CGO_ENABLED=0).
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
containerd_version="$(required "$here/containerd/go.mod" github.com/containerd/containerd/v2)"
if [[ -z "$k8s_version" || -z "$etcd_version" || -z "$containerd_version" ]]; then
    echo "cannot read the pinned versions from $here/*/go.mod" >&2
    exit 1
fi
go_version="$(go env GOVERSION)"
k8s_tools=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet)
containerd_tools=(containerd containerd-shim-runc-v2 ctr)
stamp="${k8s_tools[*]} ${k8s_version} etcd ${etcd_version} ${containerd_tools[*]} ${containerd_version} ${go_version}"

mkdir -p "$out"
# One build at a time: concurrent `cargo xtask setup` runs wait here, then find the stamp.
exec 9>"$out/.lock"
flock 9

all_present() {
    local name
    for name in "${k8s_tools[@]}" etcd "${containerd_tools[@]}"; do
        [[ -x "$out/$name" ]] || return 1
    done
}
if [[ -f "$out/STAMP" && "$(cat "$out/STAMP")" == "$stamp" ]] && all_present; then
    echo "control plane up to date in $out ($stamp)"
    exit 0
fi

rm -f "$out/STAMP"

minor="${k8s_version#v1.}"
minor="${minor%%.*}"
version_pkg="k8s.io/component-base/version"
k8s_ldflags="-s -w -X ${version_pkg}.gitVersion=${k8s_version} -X ${version_pkg}.gitMajor=1"
k8s_ldflags+=" -X ${version_pkg}.gitMinor=${minor} -X ${version_pkg}.gitTreeState=clean"

containerd_ldflags="-s -w -X github.com/containerd/containerd/v2/version.Version=${containerd_version}"

# build DIR PACKAGE NAME LDFLAGS [go build flags...]
build() {
    local dir="$1" pkg="$2" name="$3" ldflags="$4" started="$SECONDS"
    shift 4
    echo "building $name ($pkg) into $out"
    (cd "$here/$dir" && CGO_ENABLED=0 go build -trimpath -mod=readonly "$@" -ldflags="$ldflags" \
        -o "$out/.$name.part" "$pkg")
    mv -f "$out/.$name.part" "$out/$name"
    echo "built $name in $((SECONDS - started)) s"
}

for name in "${k8s_tools[@]}"; do
    build kubernetes "k8s.io/kubernetes/cmd/$name" "$name" "$k8s_ldflags"
done
build etcd . etcd "-s -w"
# no_btrfs: the btrfs snapshotter needs cgo; the node uses overlayfs.
for name in "${containerd_tools[@]}"; do
    build containerd "github.com/containerd/containerd/v2/cmd/$name" "$name" "$containerd_ldflags" \
        -tags no_btrfs
done

echo "$stamp" > "$out/.STAMP.part"
mv -f "$out/.STAMP.part" "$out/STAMP"
echo "control plane built in $out ($stamp)"

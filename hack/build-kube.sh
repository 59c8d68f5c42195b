#!/usr/bin/env bash
# build-kube.sh [VERSION]: builds kube-apiserver and kubectl from the
# k8s.io/kubernetes Go module at VERSION (default 1.34.4) for test/kube.
#
# The build happens in a throwaway module under
# ${KEYGATE_CACHE:-$HOME/.cache/keygate}/kube-VERSION/ that requires
# k8s.io/kubernetes and pins every staging module (k8s.io/api, ...) to the
# matching v0.MINOR.PATCH with replace directives, as kubernetes' own go.mod
# points them at ./staging. The repository's go.mod is never touched.
# Idempotent: a binary that already exists is not rebuilt. A cold build takes
# several minutes and about 2 GB of memory.
#
# It also links etcd (Debian's etcd-server, /usr/bin/etcd) into the bin
# folder when present, so the folder can serve as KUBEBUILDER_ASSETS.
set -euo pipefail

version="${1:-${KEYGATE_KUBE_VERSION:-1.34.4}}"
version="${version#v}"
cache="${KEYGATE_CACHE:-$HOME/.cache/keygate}"
dir="$cache/kube-$version"
bin="$dir/bin"
mkdir -p "$bin"

minor="${version#*.}" # 34.4
staging="v0.$minor"   # v0.34.4

link_etcd() {
	local etcd
	etcd="$(command -v etcd || true)"
	if [ -n "$etcd" ] && [ ! -e "$bin/etcd" ]; then
		ln -sf "$etcd" "$bin/etcd"
	fi
}

if [ -x "$bin/kube-apiserver" ] && [ -x "$bin/kubectl" ]; then
	link_etcd
	echo "kube $version: cached in $bin"
	ls -l "$bin"
	exit 0
fi

mod="$dir/mod"
mkdir -p "$mod"
cd "$mod"
# Keep this build away from any enclosing workspace or module settings;
# -mod=mod lets go list and go build complete this module's go.sum.
export GOWORK=off GOFLAGS=-mod=mod GO111MODULE=on

start=$(date +%s)

echo "downloading k8s.io/kubernetes@v$version"
kdir="$(go mod download -json "k8s.io/kubernetes@v$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
if [ -z "$kdir" ] || [ ! -f "$kdir/go.mod" ]; then
	echo "build-kube: cannot find k8s.io/kubernetes@v$version in the module cache" >&2
	exit 1
fi

# Every "k8s.io/NAME => ./staging/src/k8s.io/NAME" in kubernetes' go.mod.
mapfile -t mods < <(sed -n 's#^[[:space:]]*\(k8s\.io/[^ ]*\) => \./staging/src/.*#\1#p' "$kdir/go.mod" | sort -u)
if [ "${#mods[@]}" -eq 0 ]; then
	echo "build-kube: no staging modules found in $kdir/go.mod" >&2
	exit 1
fi
echo "pinning ${#mods[@]} staging modules to $staging"

{
	echo "module keygate.local/kubebuild"
	echo
	echo "go $(go env GOVERSION | sed 's/^go//; s/^\([0-9]*\.[0-9]*\).*/\1/')"
	echo
	echo "require k8s.io/kubernetes v$version"
	echo
	echo "replace ("
	for m in "${mods[@]}"; do
		echo "	$m => $m $staging"
	done
	echo ")"
} >go.mod

# The binaries' main packages, so that go.mod and go.sum resolve them.
cat >tools.go <<'GO'
//go:build tools

package kubebuild

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO

echo "resolving modules"
go get "k8s.io/kubernetes@v$version" >/dev/null
go list k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl >/dev/null
echo "resolved in $(($(date +%s) - start)) s"

ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v$version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor%%.*}"
ldflags="$ldflags -X k8s.io/client-go/pkg/version.gitVersion=v$version"
if [ ! -x "$bin/kube-apiserver" ]; then
	echo "building kube-apiserver v$version (several minutes, ~2 GB of memory)"
	CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$bin/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
	mv "$bin/kube-apiserver.tmp" "$bin/kube-apiserver"
fi
if [ ! -x "$bin/kubectl" ]; then
	echo "building kubectl v$version"
	CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$bin/kubectl.tmp" k8s.io/kubernetes/cmd/kubectl
	mv "$bin/kubectl.tmp" "$bin/kubectl"
fi
link_etcd
echo "kube $version: built in $(($(date +%s) - start)) s into $bin"
ls -l "$bin"

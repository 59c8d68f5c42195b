#!/usr/bin/env bash
# build-zitadel-op.sh [VERSION]: builds the example OpenID provider of
# github.com/zitadel/oidc at VERSION (default v3.52.0) for
# test/e2e/oidc_provider_test.go: a real OP that someone else wrote, whose
# RS256 ID tokens keygate verifies through a session_issuers entry.
#
# The build happens in a throwaway module under
# ${KEYGATE_CACHE:-$HOME/.cache/keygate}/zitadel-op-VERSION/ that requires
# github.com/zitadel/oidc/v3; its go.sum pins every module the build reads.
# The repository's go.mod is never touched. Idempotent: a binary that already
# exists is not rebuilt. A cold build (modules downloaded through the Go
# module proxy) takes about a minute.
set -euo pipefail

version="${1:-${KEYGATE_ZITADEL_OP_VERSION:-v3.52.0}}"
version="v${version#v}"
cache="${KEYGATE_CACHE:-$HOME/.cache/keygate}"
dir="$cache/zitadel-op-$version"
bin="$dir/bin/zitadel-op"
pkg=github.com/zitadel/oidc/v3/example/server

if [ -x "$bin" ]; then
	echo "zitadel-op $version: cached in $bin"
	exit 0
fi

mod="$dir/mod"
mkdir -p "$mod" "$dir/bin"
cd "$mod"
# Keep this build away from any enclosing workspace or module settings;
# -mod=mod lets go get and go build complete this module's go.sum.
export GOWORK=off GOFLAGS=-mod=mod GO111MODULE=on

start=$(date +%s)
{
	echo "module keygate.local/zitadelop"
	echo
	echo "go $(go env GOVERSION | sed 's/^go//; s/^\([0-9]*\.[0-9]*\).*/\1/')"
} >go.mod
rm -f go.sum

# The OP's main package, so that go.mod and go.sum resolve what it imports.
cat >tools.go <<GO
//go:build tools

package zitadelop

import _ "$pkg"
GO

echo "resolving github.com/zitadel/oidc/v3@$version"
go get "github.com/zitadel/oidc/v3@$version" >/dev/null
go list "$pkg" >/dev/null
echo "building $pkg@$version"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin.tmp" "$pkg"
mv "$bin.tmp" "$bin"
echo "zitadel-op $version: built in $(($(date +%s) - start)) s into $bin"
ls -l "$bin"

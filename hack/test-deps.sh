#!/usr/bin/env bash
# Installs what `make test` needs beyond Go, so that it passes on a fresh
# Debian machine: nginx and Caddy (test/proxy), etcd (test/kube), redis-server
# (rate limits and server-side sessions) and chromium (the key page, driven by
# chromedp) from Debian's packages, and kube-apiserver + kubectl built from the
# k8s.io/kubernetes Go module (cached in ~/.cache/keygate; a cold build takes
# about 8 minutes and 2 GB of memory, a cached one a second), and
# zitadel/oidc's example OpenID provider built from its Go module (the same
# cache; about a minute cold).
# KEYGATE_SKIP_PROXIES=1 / KEYGATE_SKIP_KUBE=1 / KEYGATE_SKIP_BROWSER=1 /
# KEYGATE_SKIP_OIDC=1 skip those suites and their installs.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
if [ "${KEYGATE_SKIP_PROXIES:-}" != 1 ]; then
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
	command -v caddy >/dev/null 2>&1 || need+=(caddy)
fi
if [ "${KEYGATE_SKIP_KUBE:-}" != 1 ]; then
	command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
fi
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if [ "${KEYGATE_SKIP_BROWSER:-}" != 1 ]; then
	command -v chromium >/dev/null 2>&1 || need+=(chromium)
fi

if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "test-deps: missing ${need[*]}; install them (apt-get install ${need[*]}) or run as root" >&2
		exit 1
	fi
	echo "== installing ${need[*]} from Debian"
	# Install only: the packages would start their own system services (nginx
	# and Caddy on port 80, etcd on 2379); the tests run their own instances.
	# A policy-rc.d that exits 101 stops that.
	rcd=/usr/sbin/policy-rc.d
	made_rcd=
	if [ ! -e "$rcd" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$rcd"
		chmod +x "$rcd"
		made_rcd=1
		trap 'rm -f "$rcd"' EXIT
	fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
	if [ -n "$made_rcd" ]; then
		rm -f "$rcd"
		trap - EXIT
	fi
fi

if [ "${KEYGATE_SKIP_KUBE:-}" != 1 ]; then
	bash hack/build-kube.sh
fi
if [ "${KEYGATE_SKIP_OIDC:-}" != 1 ]; then
	bash hack/build-zitadel-op.sh
fi

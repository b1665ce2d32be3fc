#!/usr/bin/env bash
# Installs everything Coyote needs on a fresh Debian 12 machine into this checkout:
# system packages when missing (PostgreSQL 15, Java 17, Maven; Chromium for the tests), uv, the workspace's
# virtual environment (.venv) with all five packages and their Cython extensions built, and helm (built with Go
# from the Go module proxy) for the chart's tests, and toxiproxy-server (the same way) for the fault suite's
# network faults.
# Idempotent and quiet when there is nothing to do. Used by `make demo` and `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
HELM_VERSION=v3.21.4
# The Kubernetes version helm assumes without a cluster (`helm template`, lint's deprecation checks): that
# of the client-go it is built with (v0.36 for helm v3.21), as helm's own Makefile sets it.
HELM_KUBE_MINOR=36
TOXIPROXY_VERSION=v2.12.0
say() { printf '\033[1m==>\033[0m %s\n' "$*"; }

apt_packages=()
[ -x /usr/lib/postgresql/15/bin/postgres ] || apt_packages+=(postgresql-15)
command -v java >/dev/null || apt_packages+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || apt_packages+=(maven)
command -v cc >/dev/null || apt_packages+=(build-essential)
# The dashboard's browser tests drive Debian's Chromium (`make test` sets this; the demo does not
# need a browser).
if [ "${COYOTE_BROWSER_TESTS:-0}" = 1 ]; then
    command -v chromium >/dev/null || apt_packages+=(chromium)
fi
if [ ${#apt_packages[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing system packages: ${apt_packages[*]}; install them with apt-get as root" >&2
        exit 1
    fi
    say "installing ${apt_packages[*]} from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null
    # Debian's package starts a cluster of its own; Coyote runs its own data directory.
    if command -v pg_ctlcluster >/dev/null; then
        pg_ctlcluster 15 main stop 2>/dev/null || true
    fi
fi

UV=$(command -v uv || true)
if [ -z "$UV" ] || ! "$UV" --version | grep -q "$UV_VERSION"; then
    UV=.coyote/tools/uv/bin/uv
    if [ ! -x "$UV" ]; then
        say "installing uv $UV_VERSION into .coyote/tools"
        python3 -m pip install --quiet --disable-pip-version-check --target .coyote/tools/uv \
            "uv==$UV_VERSION"
    fi
fi

say "syncing the workspace into .venv (first run downloads wheels and builds Cython)"
"$UV" sync --all-packages --locked --quiet

# helm, for the chart's lint/template tests (tests/helm). Built from source with `go install` because
# the Go module proxy is reachable where release downloads may not be; pinned, and skipped when that
# version is already in .coyote/tools/bin.
GO=$(command -v go || echo /usr/local/go/bin/go)
HELM=.coyote/tools/bin/helm
if ! { [ -x "$HELM" ] && "$HELM" version --template '{{.Version}}' 2>/dev/null | grep -qx "$HELM_VERSION"; }; then
    if [ -x "$GO" ]; then
        say "installing helm $HELM_VERSION into .coyote/tools/bin (go install; first run takes a few minutes)"
        GOBIN="$PWD/.coyote/tools/bin" CGO_ENABLED=0 "$GO" install \
            -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
                -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 \
                -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$HELM_KUBE_MINOR \
                -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 \
                -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$HELM_KUBE_MINOR" \
            "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
    else
        echo "no Go toolchain found: helm not installed, the chart's tests will be skipped" >&2
    fi
fi

# toxiproxy-server, the TCP proxy between the executor and Kafka or Redis in the fault suite's network faults
# (tests/faults/test_network_faults.py). Pinned and built like helm; `go install` names the binary after its
# package directory (cmd/server), so it is built into a scratch directory and moved into place.
TOXIPROXY=.coyote/tools/bin/toxiproxy-server
if ! { [ -x "$TOXIPROXY" ] && "$TOXIPROXY" -version 2>/dev/null | grep -q " $TOXIPROXY_VERSION\$"; }; then
    if [ -x "$GO" ]; then
        say "installing toxiproxy-server $TOXIPROXY_VERSION into .coyote/tools/bin (go install)"
        scratch=$(mktemp -d)
        GOBIN="$scratch" CGO_ENABLED=0 "$GO" install \
            -ldflags "-s -w -X github.com/Shopify/toxiproxy/v2.Version=$TOXIPROXY_VERSION" \
            "github.com/Shopify/toxiproxy/v2/cmd/server@$TOXIPROXY_VERSION"
        mkdir -p "$(dirname "$TOXIPROXY")"
        mv "$scratch/server" "$TOXIPROXY"
        rm -rf "$scratch"
    else
        echo "no Go toolchain found: toxiproxy-server not installed, the network fault tests will be skipped" >&2
    fi
fi

#!/usr/bin/env bash
# Builds the test control plane (kube-apiserver, kube-controller-manager, etcd) from module sources and puts
# it into setup-envtest's cache layout, so envtest finds it without downloading anything:
#   ${ENVTEST_DIR}/k8s/${K8S_VERSION}-linux-amd64/{kube-apiserver,kube-controller-manager,etcd}
# Binaries already there are reused. A preset KUBEBUILDER_ASSETS that holds all three wins outright.
#
# Prints the assets directory on stdout; progress goes to stderr.
set -euo pipefail

# The default versions are in test/harness/versions.env, their one place.
versions="$(dirname "$0")/../test/harness/versions.env"
K8S_VERSION=${K8S_VERSION:-$(sed -n 's/^K8S_VERSION=//p' "$versions")}
ETCD_VERSION=${ETCD_VERSION:-$(sed -n 's/^ETCD_VERSION=//p' "$versions")}
GOOS_GOARCH="$(go env GOOS)-$(go env GOARCH)"
ENVTEST_DIR=${ENVTEST_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/kubebuilder-envtest}
BINARIES=(kube-apiserver kube-controller-manager etcd)

log() { printf 'build-envtest: %s\n' "$*" >&2; }

have_all() {
  local dir=$1 b
  for b in "${BINARIES[@]}"; do [ -x "$dir/$b" ] || return 1; done
}

if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
  if have_all "$KUBEBUILDER_ASSETS"; then
    log "using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
    echo "$KUBEBUILDER_ASSETS"
    exit 0
  fi
  log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS lacks one of: ${BINARIES[*]}; unset it or put them there"
  exit 1
fi

dest="$ENVTEST_DIR/k8s/$K8S_VERSION-$GOOS_GOARCH"
mkdir -p "$dest"
if have_all "$dest"; then
  log "reusing $dest"
  echo "$dest"
  exit 0
fi

work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

# install_bin SRC NAME: atomically place a built binary, so an interrupted build never leaves a partial one.
install_bin() {
  cp "$1" "$dest/.$2.tmp" && chmod 0755 "$dest/.$2.tmp" && mv -f "$dest/.$2.tmp" "$dest/$2"
}

if [ ! -x "$dest/kube-apiserver" ] || [ ! -x "$dest/kube-controller-manager" ]; then
  log "downloading k8s.io/kubernetes@v$K8S_VERSION sources"
  src=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -d "$src" ] || { log "go mod download k8s.io/kubernetes@v$K8S_VERSION failed"; exit 1; }
  cp -r "$src" "$work/kubernetes"
  chmod -R u+w "$work/kubernetes"
  cd "$work/kubernetes"
  rm -rf vendor go.work go.work.sum
  # The module's go.mod points every staging repo at ./staging; use the published modules instead.
  sed -i -E "s#^(\s*)(k8s\.io/[A-Za-z0-9._-]+) => \./staging/src/k8s\.io/[A-Za-z0-9._-]+#\1\2 => \2 v0.${K8S_VERSION#1.}#" go.mod
  # Stamp the version as the release build does (hack/lib/version.sh), so that /version reports it (the
  # harness checks it when LIFELOCK_K8S_VERSION is set) instead of v0.0.0-master.
  minor=${K8S_VERSION#*.}
  ldflags='-s -w'
  for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    ldflags+=" -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=${K8S_VERSION%%.*} -X $pkg.gitMinor=${minor%%.*} -X $pkg.gitTreeState=clean"
  done
  for b in kube-apiserver kube-controller-manager; do
    if [ -x "$dest/$b" ]; then continue; fi
    log "building $b (several minutes)"
    start=$SECONDS
    GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags="$ldflags" -o "$work/$b" "./cmd/$b"
    install_bin "$work/$b" "$b"
    log "built $b in $((SECONDS - start)) s"
  done
fi

if [ ! -x "$dest/etcd" ]; then
  log "building etcd v$ETCD_VERSION"
  start=$SECONDS
  mkdir -p "$work/etcd" && cd "$work/etcd"
  go mod init lifelock.local/etcdbuild >/dev/null 2>&1
  GOFLAGS=-mod=mod go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" >/dev/null 2>&1
  GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$work/etcd-bin" go.etcd.io/etcd/server/v3
  install_bin "$work/etcd-bin" etcd
  log "built etcd in $((SECONDS - start)) s"
fi

echo "$dest"

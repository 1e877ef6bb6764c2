#!/usr/bin/env bash
# Builds a real node from Go module sources, with nothing but the Go module proxy: kubelet, containerd (with
# containerd-shim-runc-v2 and ctr), runc, the CNI plugins bridge, host-local and loopback, and crictl.
#
# Each component is built into its own versioned directory of a cache outside the clone,
#   ${NODE_DIR}/<component>-<version>-<os>-<arch>/
# and reused from there when already built; every binary is installed atomically (written beside, then
# renamed), so an interrupted build never leaves a partial one. The directory this script prints holds a
# symlink to every binary of the versions below:
#   ${NODE_DIR}/node-<os>-<arch>-k8s<..>-containerd<..>-runc<..>-cni<..>-crictl<..>/
# The cold build time of each binary is appended to ${NODE_DIR}/build-times.txt.
#
# Prints that directory on stdout; progress goes to stderr. Run it under `nice` on a shared machine.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-1.37.2}               # k8s.io/kubernetes (cmd/kubelet)
CONTAINERD_VERSION=${CONTAINERD_VERSION:-2.4.2}  # github.com/containerd/containerd/v2
RUNC_VERSION=${RUNC_VERSION:-1.5.3}              # github.com/opencontainers/runc
CNI_PLUGINS_VERSION=${CNI_PLUGINS_VERSION:-1.10.0} # github.com/containernetworking/plugins
CRI_TOOLS_VERSION=${CRI_TOOLS_VERSION:-1.37.0}   # sigs.k8s.io/cri-tools (crictl)

GOOS_GOARCH="$(go env GOOS)-$(go env GOARCH)"
NODE_DIR=${NODE_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/lifelock-node}

log() { printf 'build-node: %s\n' "$*" >&2; }

work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

# have DIR BIN...: every BIN is an executable in DIR.
have() {
  local dir=$1 b
  shift
  for b in "$@"; do [ -x "$dir/$b" ] || return 1; done
}

# fetch_src MODULE VERSION: copies the module's sources into a fresh writable directory of $work and prints it.
# Module zips carry no vendor directory, so the build resolves dependencies from go.mod/go.sum (-mod=mod).
fetch_src() {
  local mod=$1 version=$2 src dst
  log "downloading $mod@$version"
  src=$(go mod download -json "$mod@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -d "$src" ] || { log "go mod download $mod@$version failed"; exit 1; }
  dst="$work/$(basename "$mod")-$version"
  rm -rf "$dst"
  cp -r "$src" "$dst"
  chmod -R u+w "$dst"
  rm -rf "$dst/vendor" "$dst/go.work" "$dst/go.work.sum"
  echo "$dst"
}

# build DEST NAME PKG [go build flags...]: builds PKG (relative to the current module) and installs it atomically
# as DEST/NAME; logs and records how long the build took. CGO_ENABLED and -tags come from the caller.
build() {
  local dest=$1 name=$2 pkg=$3 start secs
  shift 3
  log "building $name"
  start=$SECONDS
  GOFLAGS=-mod=mod go build -trimpath "$@" -o "$work/$name" "$pkg"
  secs=$((SECONDS - start))
  cp "$work/$name" "$dest/.$name.tmp" && chmod 0755 "$dest/.$name.tmp" && mv -f "$dest/.$name.tmp" "$dest/$name"
  rm -f "$work/$name"
  log "built $name in $secs s"
  printf '%s\t%s\t%s\t%ss\n' "$(date -u +%FT%TZ)" "$(basename "$dest")" "$name" "$secs" >>"$NODE_DIR/build-times.txt"
}

mkdir -p "$NODE_DIR"

# kubelet: like hack/build-envtest.sh builds the API server, with every staging module replaced by its
# published v0.x release.
kubelet_dir="$NODE_DIR/kubelet-$K8S_VERSION-$GOOS_GOARCH"
mkdir -p "$kubelet_dir"
if ! have "$kubelet_dir" kubelet; then
  src=$(fetch_src k8s.io/kubernetes "v$K8S_VERSION")
  sed -i -E "s#^(\s*)(k8s\.io/[A-Za-z0-9._-]+) => \./staging/src/k8s\.io/[A-Za-z0-9._-]+#\1\2 => \2 v0.${K8S_VERSION#1.}#" "$src/go.mod"
  (cd "$src" && CGO_ENABLED=0 build "$kubelet_dir" kubelet ./cmd/kubelet -ldflags="-s -w \
    -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION -X k8s.io/component-base/version.gitTreeState=clean")
else
  log "reusing $kubelet_dir"
fi

# containerd, its runc shim and ctr: static, without the snapshotters that need cgo or host libraries.
containerd_dir="$NODE_DIR/containerd-$CONTAINERD_VERSION-$GOOS_GOARCH"
containerd_bins=(containerd containerd-shim-runc-v2 ctr)
mkdir -p "$containerd_dir"
if ! have "$containerd_dir" "${containerd_bins[@]}"; then
  src=$(fetch_src github.com/containerd/containerd/v2 "v$CONTAINERD_VERSION")
  for b in "${containerd_bins[@]}"; do
    have "$containerd_dir" "$b" && continue
    (cd "$src" && CGO_ENABLED=0 build "$containerd_dir" "$b" "./cmd/$b" -tags 'no_btrfs no_devmapper no_zfs' \
      -ldflags="-s -w -X github.com/containerd/containerd/v2/version.Version=v$CONTAINERD_VERSION")
  done
else
  log "reusing $containerd_dir"
fi

# runc: needs cgo (libcontainer/nsenter); built without the seccomp tag, so it needs no libseccomp.
runc_dir="$NODE_DIR/runc-$RUNC_VERSION-$GOOS_GOARCH"
mkdir -p "$runc_dir"
if ! have "$runc_dir" runc; then
  src=$(fetch_src github.com/opencontainers/runc "v$RUNC_VERSION")
  (cd "$src" && CGO_ENABLED=1 build "$runc_dir" runc . -ldflags="-s -w -X main.version=$RUNC_VERSION")
else
  log "reusing $runc_dir"
fi

# CNI plugins.
cni_dir="$NODE_DIR/cni-plugins-$CNI_PLUGINS_VERSION-$GOOS_GOARCH"
cni_bins=(bridge:plugins/main/bridge host-local:plugins/ipam/host-local loopback:plugins/main/loopback)
mkdir -p "$cni_dir"
if ! have "$cni_dir" bridge host-local loopback; then
  src=$(fetch_src github.com/containernetworking/plugins "v$CNI_PLUGINS_VERSION")
  for entry in "${cni_bins[@]}"; do
    have "$cni_dir" "${entry%%:*}" && continue
    (cd "$src" && CGO_ENABLED=0 build "$cni_dir" "${entry%%:*}" "./${entry#*:}" -ldflags="-s -w \
      -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=v$CNI_PLUGINS_VERSION")
  done
else
  log "reusing $cni_dir"
fi

# crictl.
crictl_dir="$NODE_DIR/crictl-$CRI_TOOLS_VERSION-$GOOS_GOARCH"
mkdir -p "$crictl_dir"
if ! have "$crictl_dir" crictl; then
  src=$(fetch_src sigs.k8s.io/cri-tools "v$CRI_TOOLS_VERSION")
  (cd "$src" && CGO_ENABLED=0 build "$crictl_dir" crictl ./cmd/crictl -ldflags="-s -w \
    -X sigs.k8s.io/cri-tools/pkg/version.Version=v$CRI_TOOLS_VERSION")
else
  log "reusing $crictl_dir"
fi

# One directory with every binary, named by every version.
node="$NODE_DIR/node-$GOOS_GOARCH-k8s$K8S_VERSION-containerd$CONTAINERD_VERSION-runc$RUNC_VERSION-cni$CNI_PLUGINS_VERSION-crictl$CRI_TOOLS_VERSION"
if ! have "$node" kubelet "${containerd_bins[@]}" runc bridge host-local loopback crictl; then
  tmp="$NODE_DIR/.node.$$.tmp"
  rm -rf "$tmp" && mkdir -p "$tmp"
  for b in kubelet; do ln -s "../$(basename "$kubelet_dir")/$b" "$tmp/$b"; done
  for b in "${containerd_bins[@]}"; do ln -s "../$(basename "$containerd_dir")/$b" "$tmp/$b"; done
  ln -s "../$(basename "$runc_dir")/runc" "$tmp/runc"
  for b in bridge host-local loopback; do ln -s "../$(basename "$cni_dir")/$b" "$tmp/$b"; done
  ln -s "../$(basename "$crictl_dir")/crictl" "$tmp/crictl"
  rm -rf "$node"
  mv "$tmp" "$node"
fi
echo "$node"

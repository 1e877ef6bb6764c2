#!/usr/bin/env bash
# Checks what `make demo` and `make test` need of the machine, and says what is missing and how to get it,
# before anything is built. Prints nothing when all is there.
set -uo pipefail

fail=0
missing() { printf 'prerequisite missing: %s\n' "$*" >&2; fail=1; }

if [ "$(uname -s)" != Linux ]; then
  missing "Linux: the tests run candidate processes in Linux namespaces, and the control plane is built for linux (this is $(uname -s))"
fi

if ! command -v go >/dev/null 2>&1; then
  missing "Go: install Go $(sed -n 's/^go //p' go.mod) or later from https://go.dev/dl/ and put it on PATH"
else
  want=$(sed -n 's/^go \([0-9]*\.[0-9]*\).*/\1/p' go.mod)
  have=$(go env GOVERSION | sed -n 's/^go\([0-9]*\.[0-9]*\).*/\1/p')
  if [ -n "$have" ] && [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -1)" != "$want" ]; then
    missing "Go $want or later: this is go$have (go.mod says go $want)"
  fi
  cc=$(go env CC)
  if ! command -v "${cc%% *}" >/dev/null 2>&1; then
    missing "a C compiler ($cc): make test runs the race detector, which needs cgo; install gcc (Debian, Ubuntu: apt-get install gcc)"
  fi
fi

if [ "$(id -u)" != 0 ]; then
  max=$(cat /proc/sys/user/max_user_namespaces 2>/dev/null || echo 0)
  clone=$(cat /proc/sys/kernel/unprivileged_userns_clone 2>/dev/null || echo 1)
  if [ "$max" = 0 ] || [ "$clone" = 0 ]; then
    missing "root or unprivileged user namespaces: each candidate process runs in its own UTS and mount namespace (its own hostname, as in a Pod); run as root, or enable them (sysctl user.max_user_namespaces=15000 kernel.unprivileged_userns_clone=1)"
  fi
fi

# The first build of the control plane copies the Kubernetes sources and fills the Go build cache.
if command -v go >/dev/null 2>&1; then
  cache=$(go env GOCACHE)
  mkdir -p "$cache" 2>/dev/null
  free_kib=$(df -Pk "$cache" 2>/dev/null | awk 'NR==2 {print $4}')
  need_gib=${PREREQ_DISK_GIB:-6}
  if [ -n "$free_kib" ] && [ "$free_kib" -lt $((need_gib * 1024 * 1024)) ]; then
    missing "free disk: $((free_kib / 1024 / 1024)) GiB free where Go caches builds ($cache); the first run needs about $need_gib GiB"
  fi
fi

exit $fail

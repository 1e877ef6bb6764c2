#!/usr/bin/env bash
# Measures what adopting lifelock adds to a consumer's module graph: a fresh module that uses
# controller-runtime at the version lifelock requires, before and after it also imports
# pkg/manageropts (through a replace to this checkout). Prints go.sum lines, modules in the build list
# (go list -m all), packages linked (go list -deps) and the binary's size, before and after.
# Needs the Go module proxy (or a warm module cache); changes nothing in the checkout. With a replace, go.sum
# holds no lines for lifelock itself; a go get from the proxy adds its two.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cr=$(cd "$root" && go list -m -f '{{.Version}}' sigs.k8s.io/controller-runtime)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
export GOWORK=off GOFLAGS=-mod=mod

go mod init example.com/consumer >/dev/null 2>&1
cat > main.go <<'GO'
package main

import ctrl "sigs.k8s.io/controller-runtime"

func main() {
	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{})
	if err != nil {
		panic(err)
	}
	_ = mgr.Start(ctrl.SetupSignalHandler())
}
GO
go get "sigs.k8s.io/controller-runtime@$cr" >/dev/null 2>&1
go mod tidy >/dev/null 2>&1

count() {
  go build -o consumer . >/dev/null
  printf '%-28s go.sum lines %4d  modules %4d  packages %4d  binary %s bytes\n' "$1" \
    "$(wc -l < go.sum)" "$(go list -m all | wc -l)" "$(go list -deps . | wc -l)" "$(stat -c %s consumer)"
  go list -m all | awk 'NF >= 2 {print $1, $2}' | sort > "modules.$2"
}
count "controller-runtime $cr:" before

go mod edit -require=github.com/lifelock/lifelock@v0.0.0 -replace="github.com/lifelock/lifelock=$root"
sed -i 's#^import ctrl "sigs.k8s.io/controller-runtime"#import (\n\tctrl "sigs.k8s.io/controller-runtime"\n\n\t"github.com/lifelock/lifelock/pkg/manageropts"\n)#; s#ctrl.NewManager(#manageropts.NewManager(#' main.go
go mod tidy >/dev/null
count "+ lifelock (manageropts):" after
# Modules by path: added, and those whose selected version changed.
join -a2 -e - -o 0,1.2,2.2 <(awk '{print $1, $2}' modules.before) <(awk '{print $1, $2}' modules.after) |
  awk '$2 == "-" {print "added:   " $1 " " $3} $2 != "-" && $2 != $3 {print "changed: " $1 " " $2 " -> " $3}'

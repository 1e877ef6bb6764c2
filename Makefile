# Versions of the test control plane (test/harness/versions.env, their one place) and of the tools.
include test/harness/versions.env
ENVTEST_K8S_VERSION ?= $(K8S_VERSION)
GOLANGCI_LINT_VERSION ?= v2.15.0

# Where tools are installed. Each carries its version in its name, so that bumping a version installs it
# anew (kubebuilder's go-install-tool pattern).
LOCALBIN ?= $(shell pwd)/bin
GOLANGCI_LINT ?= $(LOCALBIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)

# Prints the directory holding kube-apiserver, kube-controller-manager and etcd, building them first if
# absent (hack/build-envtest.sh reuses binaries already there; a preset KUBEBUILDER_ASSETS wins). Recipes
# assign it to a shell variable first, so that a failed build stops the recipe.
BUILD_ENVTEST = K8S_VERSION=$(ENVTEST_K8S_VERSION) ETCD_VERSION=$(ETCD_VERSION) hack/build-envtest.sh

# Setting SHELL to bash allows bash commands to be executed by recipes.
# Options are set to exit when a recipe line exits non-zero or a piped command fails.
SHELL = /usr/bin/env bash -o pipefail
.SHELLFLAGS = -ec

.PHONY: all
all: build

##@ General

# The help target prints out all targets with their descriptions organized beneath their categories. The
# categories are represented by '##@' and the target descriptions by '##'.
.PHONY: help
help: ## Display this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-15s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: fmt
fmt: ## Run go fmt against code.
	go fmt ./...

# Every suite lives in one Go module, test/ (its go.mod replaces the library with this checkout), so that
# the library's go.mod lists only what pkg/ and examples/ need. TEST_DIR is where test recipes cd to.
TEST_DIR = test

.PHONY: vet
vet: ## Run go vet against code.
	go vet ./...
	cd $(TEST_DIR) && go vet ./...

.PHONY: lint
lint: golangci-lint ## Run golangci-lint (installs it into bin/ if absent).
	$(GOLANGCI_LINT) run ./...
	cd $(TEST_DIR) && $(GOLANGCI_LINT) run --config $(CURDIR)/.golangci.yml ./...

# The e2e suite runs its specs in E2E_PROCS parallel Ginkgo processes (ginkgo -p), on one control plane;
# the specs that stop the API server run last, alone. Its coverage of pkg/ is written to cover.out.
E2E_PROCS ?= 3
GINKGO = go tool ginkgo
COVERPKG = github.com/lifelock/lifelock/pkg/...

.PHONY: test
test: prereqs vet envtest ## Run go vet, the unit tests and a short simulation run, then the envtest e2e suite in parallel, all with the race detector (about 4 min warm).
	go test -count=1 -v -run 'TestSimulation' ./pkg/lifelock -args -sim.schedules=$(SIM_SHORT)
	go test -race -count=1 ./...
	assets="$$($(BUILD_ENVTEST))"; cd $(TEST_DIR) && KUBEBUILDER_ASSETS="$$assets" go test -race -count=1 ./harness/... ./component
	assets="$$($(BUILD_ENVTEST))"; cd $(TEST_DIR) && KUBEBUILDER_ASSETS="$$assets" $(GINKGO) -race --procs=$(E2E_PROCS) --timeout=30m \
		--coverpkg=$(COVERPKG) --coverprofile=cover.out --output-dir=$(CURDIR) ./e2e

# make test-compat proves the server side on an older Kubernetes minor: the e2e suite, as make test runs it,
# against kube-apiserver, kube-controller-manager and etcd of K8S_COMPAT_VERSION (test/harness/versions.env),
# built into their own versioned cache directory. LIFELOCK_K8S_VERSION makes the harness refuse another
# server. Not part of test-all (a cold build of a second control plane; see docs/development.md).
BUILD_ENVTEST_COMPAT = K8S_VERSION=$(K8S_COMPAT_VERSION) ETCD_VERSION=$(ETCD_COMPAT_VERSION) hack/build-envtest.sh
.PHONY: test-compat
test-compat: prereqs ## Run the envtest e2e suite against the oldest supported Kubernetes minor (K8S_COMPAT_VERSION, 1.35); builds that control plane on first use.
	assets="$$($(BUILD_ENVTEST_COMPAT))"; cd $(TEST_DIR) && KUBEBUILDER_ASSETS="$$assets" LIFELOCK_K8S_VERSION=$(K8S_COMPAT_VERSION) \
		$(GINKGO) -race --procs=$(E2E_PROCS) --timeout=30m ./e2e

.PHONY: test-all
test-all: test ## Run make test, then the demo's test, test-scaffold, test-chaos, test-interop and test-bench (about 15 min more warm).
	assets="$$($(BUILD_ENVTEST))"; cd $(TEST_DIR) && KUBEBUILDER_ASSETS="$$assets" go test -count=1 -v ./demo
	@$(MAKE) --no-print-directory test-scaffold
	@$(MAKE) --no-print-directory test-chaos
	@$(MAKE) --no-print-directory test-interop
	@$(MAKE) --no-print-directory test-bench

# The simulation (pkg/lifelock/sim_test.go) drives the lock's decision core through seeded schedules of a
# modelled API server, garbage collector, kubelet and client-go elector. make test explores SIM_SHORT of them;
# make test-sim explores SIM_SCHEDULES and prints the count of schedules, steps and distinct states.
SIM_SHORT ?= 20000
SIM_SCHEDULES ?= 1000000
SIM_SEED ?= 0
.PHONY: test-sim
test-sim: ## Explore SIM_SCHEDULES (1000000) seeded schedules of the protocol in the simulation; SIM_SEED=n starts elsewhere.
	go test -count=1 -v -timeout 60m -run 'TestSimulation' ./pkg/lifelock -args -sim.schedules=$(SIM_SCHEDULES) -sim.seed=$(SIM_SEED)

.PHONY: test-scaffold
test-scaffold: envtest ## Scaffold a kubebuilder v4.16.0 project, apply the README's adoption diff, and run it as Pods (also as its ServiceAccount with config/rbac as a component).
	assets="$$($(BUILD_ENVTEST))"; cd $(TEST_DIR) && KUBEBUILDER_ASSETS="$$assets" go test -count=1 -v -timeout 30m ./scaffold

.PHONY: demo
demo: envtest ## Run the failover demo: three example managers on a local control plane.
	@assets="$$($(BUILD_ENVTEST))"; cd $(TEST_DIR) && KUBEBUILDER_ASSETS="$$assets" go run ./demo

.PHONY: test-chaos
test-chaos: envtest ## Run the short chaos run: every kind of disruption four times, on separate manager processes.
	assets="$$($(BUILD_ENVTEST))"; cd $(TEST_DIR)/chaos && KUBEBUILDER_ASSETS="$$assets" go test -count=1 -v -timeout 20m . -args -ginkgo.v

ROUNDS ?= 1000
SEED ?= 0
KINDS ?=
.PHONY: chaos
chaos: envtest ## Run a long chaos run: make chaos ROUNDS=1000 [SEED=n] [KINDS=kill,term]; writes chaos-report.md.
	assets="$$($(BUILD_ENVTEST))"; cd $(TEST_DIR)/chaos && KUBEBUILDER_ASSETS="$$assets" go test -count=1 -v -timeout 0 . \
		-args -ginkgo.v -chaos.rounds=$(ROUNDS) -chaos.seed=$(SEED) -chaos.kinds=$(KINDS) -chaos.report=$(CURDIR)/chaos-report.md

# The operator-lib interop suite lives beside the benchmark, in test/bench/interop, and shares its candidate.
BENCH_OUT ?= $(CURDIR)/bench-results
QUICK ?=
.PHONY: test-bench
test-bench: envtest ## Unit-test the benchmark's report code, then run the benchmark end to end, short (make bench QUICK=1).
	cd $(TEST_DIR)/bench && go test -count=1 $$(go list ./... | grep -v '/interop$$')
	@$(MAKE) --no-print-directory bench QUICK=1 BENCH_OUT=$(CURDIR)/bench-results-quick

.PHONY: test-interop
test-interop: envtest ## Run the operator-lib interop suite: operator-lib v0.19.0 and lifelock replicas on one ConfigMap lock, and a rolling upgrade.
	assets="$$($(BUILD_ENVTEST))"; cd $(TEST_DIR)/bench && KUBEBUILDER_ASSETS="$$assets" go test -count=1 -v -timeout 20m ./interop -args -ginkgo.v

.PHONY: bench
bench: envtest ## Compare lifelock, controller-runtime's Lease election and operator-lib on a local control plane; writes bench-results/ (QUICK=1: a short run).
	assets="$$($(BUILD_ENVTEST))"; cd $(TEST_DIR)/bench && KUBEBUILDER_ASSETS="$$assets" go run . -out $(BENCH_OUT) $(if $(QUICK),-quick)

# make bench ends with the cluster-scale cost scenario; bench-cost runs it alone.
COST_LOCKS ?=
COST_WINDOW ?=
.PHONY: bench-cost
bench-cost: envtest ## Only the cost scenario: 100 locks × 3 candidates idle 60 s per implementation, over a baseline (COST_LOCKS=n, COST_WINDOW=30s, QUICK=1: 10 locks, 10 s).
	assets="$$($(BUILD_ENVTEST))"; cd $(TEST_DIR)/bench && KUBEBUILDER_ASSETS="$$assets" go run . -out $(BENCH_OUT) -cost-only $(if $(QUICK),-quick) \
		$(if $(COST_LOCKS),-cost-locks=$(COST_LOCKS)) $(if $(COST_WINDOW),-cost-window=$(COST_WINDOW))

# Admission fencing's figures (docs/fencing.md).
FENCING_TAKEOVERS ?= 1000
.PHONY: bench-fencing
bench-fencing: envtest ## Admission fencing (pkg/fencing): the window after FENCING_TAKEOVERS (1000) takeovers in which a previous term's write still passes, and the latency the policy adds to a write (about 1 min).
	assets="$$($(BUILD_ENVTEST))"; cd $(TEST_DIR) && KUBEBUILDER_ASSETS="$$assets" go run ./bench/fencing -takeovers $(FENCING_TAKEOVERS)

##@ Build

.PHONY: build
build: ## Build every package and the example manager.
	go build ./...

# The example manager as a container image: a static binary in one layer, run as 65532:65532 (the example's
# deployment.yaml runs as non-root). The archive is an OCI image layout and a docker archive at once.
EXAMPLE_IMAGE ?= lifelock-example:latest
EXAMPLE_IMAGE_TAR ?= $(LOCALBIN)/lifelock-example.tar
.PHONY: example-image
example-image: | $(LOCALBIN) ## Write examples/manager's image to bin/lifelock-example.tar (kind load image-archive, ctr images import, docker load).
	tmp="$$(mktemp -d)"; trap 'rm -rf "$$tmp"' EXIT; \
	CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$$tmp/manager" ./examples/manager; \
	cd $(TEST_DIR) && go run ./node/exampleimage -binary "$$tmp/manager" -name $(EXAMPLE_IMAGE) -o $(EXAMPLE_IMAGE_TAR)

##@ Dependencies

$(LOCALBIN):
	mkdir -p $(LOCALBIN)

.PHONY: prereqs
prereqs: ## Check what make demo and make test need of the machine (Linux, Go, a C compiler, namespaces, disk).
	@hack/check-prereqs.sh

.PHONY: envtest
envtest: prereqs ## Build the test control plane (kube-apiserver, kube-controller-manager, etcd) if absent; print its directory.
	@assets="$$($(BUILD_ENVTEST))"; echo "control plane binaries: $$assets"

.PHONY: envtest-compat
envtest-compat: prereqs ## Build the older control plane make test-compat uses (K8S_COMPAT_VERSION) if absent; print its directory.
	@assets="$$($(BUILD_ENVTEST_COMPAT))"; echo "control plane binaries: $$assets"

# A real node (kubelet, containerd, runc, CNI plugins, crictl), built from module sources by
# hack/build-node.sh into a versioned cache outside the clone. make test-node runs one Pod on it (TestNode),
# then the example manager's election on it (TestElection: real Pods, failovers, the witness history).
.PHONY: node
node: ## Build the node binaries (kubelet, containerd, runc, CNI plugins, crictl) if absent; print their directory.
	@dir="$$(nice -n 10 hack/build-node.sh)"; echo "node binaries: $$dir"

# Not part of test or test-all: it needs root, and it changes the host while it runs (see test/node/README.md).
.PHONY: test-node
test-node: envtest node ## Run a real node (kubelet, containerd, runc, CNI bridge) against the local control plane: one Pod, the example manager's failovers, then check nothing is left. Needs root.
	assets="$$($(BUILD_ENVTEST))"; dir="$$(nice -n 10 hack/build-node.sh)"; cd $(TEST_DIR) && KUBEBUILDER_ASSETS="$$assets" LIFELOCK_NODE_BIN="$$dir" go test -count=1 -v -timeout 20m ./node

.PHONY: golangci-lint
golangci-lint: $(GOLANGCI_LINT) ## Install golangci-lint into bin/ if absent.
$(GOLANGCI_LINT): | $(LOCALBIN)
	tmp="$$(mktemp -d)"; trap 'rm -rf "$$tmp"' EXIT; \
	GOBIN="$$tmp" GOFLAGS=-mod=mod go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION); \
	mv "$$tmp/golangci-lint" $(GOLANGCI_LINT)

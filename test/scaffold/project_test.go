package scaffold

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/lifelock/lifelock/test/harness"
)

// What the suite scaffolds: the project the issue and the README describe, with kubebuilder's own commands.
const (
	kubebuilderVersion = "v4.16.0"
	kubebuilderModule  = "sigs.k8s.io/kubebuilder/v4"
	// adoptionDiff is the README's diff, relative to the repository root; the suite applies exactly it.
	adoptionDiff = "docs/kubebuilder-adoption.diff"
)

// envtestK8sVersion is the Kubernetes version of the binaries `make envtest` builds, which the scaffold's
// own tests are pointed at.
var envtestK8sVersion = harness.K8sVersion

// scaffoldMakeTest is the README's command for the scaffold's own `make test` without network: the
// setup-envtest release for controller-runtime v0.25 and the exact Kubernetes version already in bin/k8s.
var scaffoldMakeTest = []string{"make", "test", "ENVTEST_VERSION=v0.25.0", "ENVTEST_K8S_VERSION=" + envtestK8sVersion}

// project is a kubebuilder scaffold built twice: as generated (lease mode, controller-runtime's election)
// and with the README's adoption diff applied (life mode).
type project struct {
	dir string // the scaffold

	// stockManager and adoptedManager are the built binaries of cmd/main.go before and after the diff.
	stockManager, adoptedManager string

	// electionID is the scaffold's LeaderElectionID; the CRD and RBAC manifests are read from dir.
	electionID string

	// addedLines and removedLines count the diff's changes to cmd/main.go, as git counts them.
	addedLines, removedLines int

	timings []string // how long each step took, for the report
}

// buildProject installs kubebuilder (into bin/ of the repository, reused), scaffolds a project in a new
// directory under tmp, instruments its controller with the witness recorder (the same in both builds),
// builds it, applies the adoption diff, points it at this checkout and builds it again.
func buildProject(ctx context.Context, repo, tmp string) (*project, error) {
	p := &project{dir: filepath.Join(tmp, "guestbook")}
	if err := os.Mkdir(p.dir, 0o755); err != nil {
		return nil, err
	}
	kubebuilder, err := p.step("install kubebuilder "+kubebuilderVersion, func() (string, error) { return installKubebuilder(ctx, repo) })
	if err != nil {
		return nil, err
	}
	steps := []struct {
		name string
		args []string
	}{
		{"kubebuilder init", []string{kubebuilder, "init", "--domain", "example.com", "--repo", "example.com/guestbook"}},
		{"kubebuilder create api", []string{kubebuilder, "create", "api", "--group", "webapp", "--version", "v1", "--kind", "Guestbook", "--resource", "--controller"}},
		{"make manifests", []string{"make", "manifests"}},
	}
	for _, s := range steps {
		if _, err := p.step(s.name, func() (string, error) { return p.run(ctx, s.args...) }); err != nil {
			return nil, err
		}
	}
	if _, err := p.step("instrument the controller", func() (string, error) { return "", p.instrument(repo) }); err != nil {
		return nil, err
	}
	if p.electionID, err = p.leaderElectionID(); err != nil {
		return nil, err
	}
	if _, err := p.step("go mod tidy (stock)", func() (string, error) { return p.run(ctx, "go", "mod", "tidy") }); err != nil {
		return nil, err
	}
	p.stockManager = filepath.Join(tmp, "stock-manager")
	if _, err := p.step("build the stock manager", func() (string, error) { return p.run(ctx, "go", "build", "-o", p.stockManager, "./cmd") }); err != nil {
		return nil, err
	}
	original, err := os.ReadFile(filepath.Join(p.dir, "cmd", "main.go"))
	if err != nil {
		return nil, err
	}
	if _, err := p.step("apply "+adoptionDiff, func() (string, error) {
		return p.run(ctx, "git", "apply", "--verbose", filepath.Join(repo, adoptionDiff))
	}); err != nil {
		return nil, err
	}
	if p.addedLines, p.removedLines, err = countChanges(ctx, tmp, original, filepath.Join(p.dir, "cmd", "main.go")); err != nil {
		return nil, err
	}
	for _, s := range [][]string{
		{"go", "mod", "edit", "-replace", "github.com/lifelock/lifelock=" + repo},
		{"go", "mod", "tidy"},
	} {
		if _, err := p.step(strings.Join(s, " "), func() (string, error) { return p.run(ctx, s...) }); err != nil {
			return nil, err
		}
	}
	p.adoptedManager = filepath.Join(tmp, "adopted-manager")
	if _, err := p.step("build the adopted manager", func() (string, error) { return p.run(ctx, "go", "build", "-o", p.adoptedManager, "./cmd") }); err != nil {
		return nil, err
	}
	return p, nil
}

// step runs f, timing it for the report, and names the step in its error.
func (p *project) step(name string, f func() (string, error)) (string, error) {
	start := time.Now()
	out, err := f()
	p.timings = append(p.timings, fmt.Sprintf("%s: %.1fs", name, time.Since(start).Seconds()))
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// run runs a command in the scaffold and returns its output; a failure carries the output.
func (p *project) run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = p.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// installKubebuilder installs kubebuilder into bin/kubebuilder-<version>/ of the repository, unless it is
// there already, and returns its path.
func installKubebuilder(ctx context.Context, repo string) (string, error) {
	dir := filepath.Join(repo, "bin", "kubebuilder-"+kubebuilderVersion)
	bin := filepath.Join(dir, "kubebuilder")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	cmd := exec.CommandContext(ctx, "go", "install", kubebuilderModule+"@"+kubebuilderVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s@%s: %w\n%s", kubebuilderModule, kubebuilderVersion, err, out)
	}
	return bin, nil
}

// witnessImport is where instrument copies the witness recorder inside the scaffold.
const witnessImport = "example.com/guestbook/internal/witness"

// instrument makes the scaffold's Guestbook controller record when it may act: it copies lifelock's
// witness recorder into the project (so the stock build does not depend on lifelock) and adds it to the
// manager next to the controller. Both builds carry it; the adoption diff does not touch these files.
func (p *project) instrument(repo string) error {
	src, err := os.ReadFile(filepath.Join(repo, "test", "harness", "witness", "witness.go"))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(p.dir, "internal", "witness"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(p.dir, "internal", "witness", "witness.go"), src, 0o644); err != nil {
		return err
	}
	file := filepath.Join(p.dir, "internal", "controller", "guestbook_controller.go")
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	edits := []struct{ old, new string }{
		{"import (\n", "import (\n\t\"" + witnessImport + "\"\n"},
		{"func (r *GuestbookReconciler) SetupWithManager(mgr ctrl.Manager) error {\n",
			"func (r *GuestbookReconciler) SetupWithManager(mgr ctrl.Manager) error {\n" +
				"\tif err := mgr.Add(witness.Recorder{}); err != nil {\n\t\treturn err\n\t}\n"},
	}
	s := string(b)
	for _, e := range edits {
		if strings.Count(s, e.old) != 1 {
			return fmt.Errorf("instrumenting %s: expected %q once; has kubebuilder's scaffold changed?", file, e.old)
		}
		s = strings.Replace(s, e.old, e.new, 1)
	}
	return os.WriteFile(file, []byte(s), 0o644)
}

// leaderElectionID reads the LeaderElectionID that kubebuilder generated (a hash of the project).
func (p *project) leaderElectionID() (string, error) {
	b, err := os.ReadFile(filepath.Join(p.dir, "cmd", "main.go"))
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(string(b)) {
		if id, ok := strings.CutPrefix(strings.TrimSpace(line), "LeaderElectionID:"); ok {
			return strconv.Unquote(strings.TrimSuffix(strings.TrimSpace(id), ","))
		}
	}
	return "", fmt.Errorf("no LeaderElectionID in the scaffold's cmd/main.go")
}

// countChanges counts the lines added to and removed from a file, as `git diff --numstat` does.
func countChanges(ctx context.Context, tmp string, original []byte, changed string) (added, removed int, err error) {
	before := filepath.Join(tmp, "main.go.orig")
	if err := os.WriteFile(before, original, 0o644); err != nil {
		return 0, 0, err
	}
	// --no-index exits 1 when the files differ.
	out, _ := exec.CommandContext(ctx, "git", "diff", "--no-index", "--numstat", before, changed).Output()
	if _, err := fmt.Fscan(bytes.NewReader(out), &added, &removed); err != nil {
		return 0, 0, fmt.Errorf("counting the changes to cmd/main.go from %q: %w", out, err)
	}
	return added, removed, nil
}

package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// This file builds the programs the suites run as Pods: examples/manager with the witness recorder added,
// and any other package of the test module.

// RepoRoot returns the root of the lifelock checkout the harness was built from.
func RepoRoot() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("harness: the runtime does not know this file's path")
	}
	return filepath.Dir(filepath.Dir(filepath.Dir(file))) // <root>/test/harness/build.go
}

// testModuleDir is the directory of the test module (<root>/test).
func testModuleDir() string { return filepath.Join(RepoRoot(), "test") }

// Edit replaces Old, which must occur exactly once in a source file, with New.
type Edit struct{ Old, New string }

// EditSource applies edits to src, the contents of file (named in errors only). An Old that is missing or
// occurs more than once is an error: the file has changed under the test and the edit needs updating.
func EditSource(file, src string, edits ...Edit) (string, error) {
	for _, e := range edits {
		if n := strings.Count(src, e.Old); n != 1 {
			return "", fmt.Errorf("editing %s: expected %q once, found it %d times; update the edit to the file", file, e.Old, n)
		}
		src = strings.Replace(src, e.Old, e.New, 1)
	}
	return src, nil
}

// exampleManagerWitness adds the witness recorder to examples/manager's main.go: the program users read
// stays free of test code, and the suites' binary records, on the machine's monotonic clock, when it acts
// (only when LIFELOCK_WITNESS_DIR is set, so the same binary runs unrecorded too).
var exampleManagerWitness = []Edit{
	{Old: "import (\n", New: "import (\n\t\"github.com/lifelock/lifelock/test/harness/witness\"\n"},
	{Old: "\tif err := mgr.AddHealthzCheck(\"healthz\", healthz.Ping); err != nil {\n", New: "" +
		"\tif os.Getenv(witness.DirEnv) != \"\" {\n" +
		"\t\tif err := mgr.Add(witness.Recorder{Who: podName}); err != nil {\n" +
		"\t\t\tsetupLog.Error(err, \"Unable to add the witness recorder\")\n" +
		"\t\t\tos.Exit(1)\n" +
		"\t\t}\n" +
		"\t}\n" +
		"\tif err := mgr.AddHealthzCheck(\"healthz\", healthz.Ping); err != nil {\n"},
}

// BuildExampleManager builds examples/manager with the witness recorder into outDir (a new temporary
// directory if outDir is "", which the caller removes) and returns the binary's path. It builds from the
// test module with a go build overlay, so neither the example's source nor the library's go.mod refers to
// the harness.
func BuildExampleManager(ctx context.Context, outDir string) (string, error) {
	return BuildExampleManagerWith(ctx, outDir, BuildOptions{})
}

// BuildOptions changes how a program is built.
type BuildOptions struct {
	// Env is added to this process's environment for go build, e.g. CGO_ENABLED=0 for a static binary
	// that runs in a container image holding nothing else.
	Env []string
}

// StaticBuild builds a static binary (no cgo), for a container image of one file.
var StaticBuild = BuildOptions{Env: []string{"CGO_ENABLED=0"}}

// BuildExampleManagerWith is BuildExampleManager with options.
func BuildExampleManagerWith(ctx context.Context, outDir string, o BuildOptions) (string, error) {
	main := filepath.Join(RepoRoot(), "examples", "manager", "main.go")
	src, err := os.ReadFile(main)
	if err != nil {
		return "", err
	}
	edited, err := EditSource(main, string(src), exampleManagerWitness...)
	if err != nil {
		return "", err
	}
	work, err := os.MkdirTemp("", "lifelock-overlay-")
	if err != nil {
		return "", err
	}
	defer func() { _ = os.RemoveAll(work) }()
	replacement := filepath.Join(work, "main.go")
	if err := os.WriteFile(replacement, []byte(edited), 0o644); err != nil {
		return "", err
	}
	overlay, err := json.Marshal(map[string]map[string]string{"Replace": {main: replacement}})
	if err != nil {
		return "", err
	}
	overlayFile := filepath.Join(work, "overlay.json")
	if err := os.WriteFile(overlayFile, overlay, 0o644); err != nil {
		return "", err
	}
	return build(ctx, testModuleDir(), "github.com/lifelock/lifelock/examples/manager", outDir, o, "-overlay", overlayFile)
}

// BuildBinary builds the Go package pkg (for example "./bench/candidate"), run from dir, into outDir (a new
// temporary directory if outDir is "", which the caller removes), and returns the binary's path.
func BuildBinary(ctx context.Context, dir, pkg, outDir string) (string, error) {
	return build(ctx, dir, pkg, outDir, BuildOptions{})
}

func build(ctx context.Context, dir, pkg, outDir string, o BuildOptions, flags ...string) (string, error) {
	if outDir == "" {
		tmp, err := os.MkdirTemp("", "lifelock-bin-")
		if err != nil {
			return "", err
		}
		outDir = tmp
	}
	out := filepath.Join(outDir, filepath.Base(pkg))
	args := append(append([]string{"build"}, flags...), "-o", out, pkg)
	start := time.Now()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	if len(o.Env) > 0 {
		cmd.Env = append(os.Environ(), o.Env...)
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s (in %s, after %s): %w\n%s", pkg, dir, time.Since(start).Round(time.Millisecond), err, b)
	}
	return out, nil
}

// BuildAtCommit builds the Go package pkg of an older version of this repository: it extracts commit
// (git archive, from the checkout at RepoRoot, which must hold that commit: a clone with full history) into
// a new temporary directory and runs go build there from moduleDir, a directory of that tree ("test/bench"),
// with GOWORK=off. The binary goes into outDir (a new temporary directory if outDir is "", which the caller
// removes); the extracted tree is removed. Its modules come from the module cache or the module proxy.
func BuildAtCommit(ctx context.Context, commit, moduleDir, pkg, outDir string) (string, error) {
	root := RepoRoot()
	if out, err := exec.CommandContext(ctx, "git", "-C", root, "cat-file", "-e", commit+"^{commit}").CombinedOutput(); err != nil {
		return "", fmt.Errorf("commit %s is not in the history of %s (a shallow clone? git fetch --unshallow): %w\n%s", commit, root, err, out)
	}
	src, err := os.MkdirTemp("", "lifelock-src-")
	if err != nil {
		return "", err
	}
	defer func() { _ = os.RemoveAll(src) }()
	archive := exec.CommandContext(ctx, "git", "-C", root, "archive", "--format=tar", "-o", filepath.Join(src, "tree.tar"), commit)
	if out, err := archive.CombinedOutput(); err != nil {
		return "", fmt.Errorf("git archive %s: %w\n%s", commit, err, out)
	}
	tree := filepath.Join(src, "tree")
	if err := os.Mkdir(tree, 0o755); err != nil {
		return "", err
	}
	if out, err := exec.CommandContext(ctx, "tar", "-xf", filepath.Join(src, "tree.tar"), "-C", tree).CombinedOutput(); err != nil {
		return "", fmt.Errorf("extracting %s: %w\n%s", commit, err, out)
	}
	return build(ctx, filepath.Join(tree, moduleDir), pkg, outDir, BuildOptions{Env: []string{"GOWORK=off"}})
}

// Command runc-noseccomp stands in for runc on a node whose runc was built without seccomp support: the
// only kind hack/build-node.sh can build, since runc's seccomp needs libseccomp's headers, which no Go
// module provides. The kubelet always asks for the RuntimeDefault seccomp profile for a Pod's sandbox, and
// such a runc fails every sandbox with "seccomp: config provided but seccomp not supported". On `create`
// and `run` this program deletes linux.seccomp from the bundle's config.json; then it executes the real
// runc ($LIFELOCK_NODE_RUNC) with the same arguments. Containers run without any seccomp filter.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

func main() {
	runc := os.Getenv("LIFELOCK_NODE_RUNC")
	if runc == "" {
		fmt.Fprintln(os.Stderr, "runc-noseccomp: LIFELOCK_NODE_RUNC is not set")
		os.Exit(2)
	}
	if err := dropSeccomp(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "runc-noseccomp: %v\n", err)
		os.Exit(2)
	}
	err := syscall.Exec(runc, append([]string{runc}, os.Args[1:]...), os.Environ())
	fmt.Fprintf(os.Stderr, "runc-noseccomp: executing %s: %v\n", runc, err)
	os.Exit(2)
}

// dropSeccomp removes linux.seccomp from the bundle's config.json if args run `create` or `run`.
func dropSeccomp(args []string) error {
	command, bundle := "", "."
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case command == "" && !strings.HasPrefix(a, "-"):
			command = a
		case command == "" && globalTakesValue(a) && !strings.Contains(a, "="):
			i++ // the value of a global option
		case command != "" && (a == "--bundle" || a == "-b") && i+1 < len(args):
			bundle = args[i+1]
			i++
		case command != "" && strings.HasPrefix(a, "--bundle="):
			bundle = strings.TrimPrefix(a, "--bundle=")
		}
	}
	if command != "create" && command != "run" {
		return nil
	}
	path := filepath.Join(bundle, "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var spec map[string]json.RawMessage
	if err := json.Unmarshal(b, &spec); err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	var linux map[string]json.RawMessage
	if raw, ok := spec["linux"]; !ok || json.Unmarshal(raw, &linux) != nil {
		return nil
	}
	if _, ok := linux["seccomp"]; !ok {
		return nil
	}
	delete(linux, "seccomp")
	if spec["linux"], err = json.Marshal(linux); err != nil {
		return err
	}
	if b, err = json.Marshal(spec); err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// globalTakesValue says whether runc's global option a takes a value in the next argument.
func globalTakesValue(a string) bool {
	switch strings.TrimLeft(a, "-") {
	case "root", "log", "log-format", "criu", "rootless":
		return true
	}
	return false
}

package harness

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// A process started with StartPodProcess runs in a sandbox that gives it what kubelet gives a container and
// nothing more: its own UTS namespace with the Pod's name as hostname, and its own mount namespace with the
// Pod's namespace in the service-account file. It shares the machine's network, so the Pod IP the harness
// writes (a local address) is one of its own. It does not get POD_NAME or POD_NAMESPACE: a program that
// finds its Pod in the sandbox finds it the way it would in a Pod whose manifest has no downward-API env.
//
// The harness enters the sandbox by re-executing the current binary with sandboxEnv set; this package's
// init sets the namespaces up and then executes the real program in place of itself.

// sandboxEnv carries the sandbox's spec to the re-executed binary.
const sandboxEnv = "LIFELOCK_HARNESS_SANDBOX"

// serviceAccountDir is where kubelet mounts the Pod's service-account files.
const serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

type sandboxSpec struct {
	Hostname  string   `json:"hostname"`
	Namespace string   `json:"namespace"`
	Program   string   `json:"program"`
	Args      []string `json:"args"`
}

func init() {
	raw, ok := os.LookupEnv(sandboxEnv)
	if !ok {
		return
	}
	err := enterSandbox(raw) // returns only on failure
	fmt.Fprintf(os.Stderr, "harness sandbox: %v\n", err)
	os.Exit(127)
}

func enterSandbox(raw string) error {
	var s sandboxSpec
	if err := json.Unmarshal([]byte(raw), &s); err != nil {
		return fmt.Errorf("reading %s: %w", sandboxEnv, err)
	}
	// Private first, or the mount below would propagate to the machine's mount namespace.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	if err := unix.Mount("tmpfs", "/var/run", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		return fmt.Errorf("mounting a tmpfs on /var/run: %w", err)
	}
	if err := os.MkdirAll(serviceAccountDir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(serviceAccountDir, "namespace"), []byte(s.Namespace), 0o644); err != nil {
		return err
	}
	if err := unix.Sethostname([]byte(s.Hostname)); err != nil {
		return fmt.Errorf("setting the hostname: %w", err)
	}
	if err := os.Unsetenv(sandboxEnv); err != nil {
		return err
	}
	return syscall.Exec(s.Program, append([]string{s.Program}, s.Args...), os.Environ())
}

// sandboxCommand returns the command that runs program with args in a sandbox for the Pod ns/name. The
// environment is env without the variables that would tell the program its Pod.
func sandboxCommand(ns, name string, env []string, program string, args ...string) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	if program, err = filepath.Abs(program); err != nil {
		return nil, err
	}
	spec, err := json.Marshal(sandboxSpec{Hostname: name, Namespace: ns, Program: program, Args: args})
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(withoutPodEnv(env), sandboxEnv+"="+string(spec))
	cmd.SysProcAttr = processAttr()
	cmd.SysProcAttr.Cloneflags = unix.CLONE_NEWUTS | unix.CLONE_NEWNS
	if uid, gid := os.Getuid(), os.Getgid(); uid != 0 {
		// Without root, a user namespace owns the new ones; the program runs as root there, as the caller
		// outside.
		cmd.SysProcAttr.Cloneflags |= unix.CLONE_NEWUSER
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: uid, Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: gid, Size: 1}}
	}
	return cmd, nil
}

// processAttr puts a candidate process in its own process group (signals to the test do not reach it) and
// kills it if the test process dies, so that no candidate outlives its test.
func processAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

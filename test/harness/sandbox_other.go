//go:build !linux

package harness

import (
	"errors"
	"os/exec"
	"syscall"
)

func sandboxCommand(ns, name string, env []string, program string, args ...string) (*exec.Cmd, error) {
	return nil, errors.New("running a process as a Pod's container needs Linux namespaces")
}

func processAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/lifelock/lifelock/test/harness"
)

// With -profile, every candidate and kube-apiserver write CPU profiles in slices of profileSlice (a
// candidate is killed, not stopped, so a profile must end while it runs), and the bench prints, after each
// group of failovers, the command that merges the slices covering them.
const profileSlice = 5 * time.Second

// profileAPIServer writes kube-apiserver's CPU profile into dir in slices until ctx ends, from its
// /debug/pprof endpoint (kube-apiserver serves it by default; the harness's administrator may read it).
func profileAPIServer(ctx context.Context, cp *harness.ControlPlane, dir string) error {
	for ctx.Err() == nil {
		from := time.Now()
		data, err := cp.Client.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/profile").
			Param("seconds", strconv.Itoa(int(profileSlice/time.Second))).DoRaw(ctx)
		if ctx.Err() != nil {
			return nil // the slice cut short: nothing to keep
		}
		if err != nil {
			return fmt.Errorf("reading kube-apiserver's CPU profile: %w", err)
		}
		name := filepath.Join(dir, fmt.Sprintf("kube-apiserver-%d.pprof", from.UnixNano()))
		if err := os.WriteFile(name, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// profileCommand is the shell command that merges the profile slices of dir written from `from` to one
// slice after `to`: the CPU of the candidates (kube-apiserver's with who = "kube-apiserver").
func profileCommand(dir, who string, from, to time.Time) string {
	pattern := "*.pprof"
	if who == "kube-apiserver" {
		pattern = "kube-apiserver-*.pprof"
	}
	exclude := ""
	if who != "kube-apiserver" {
		exclude = " ! -name 'kube-apiserver-*'"
	}
	return fmt.Sprintf("go tool pprof -top $(find %s -name '%s'%s -newermt @%d ! -newermt @%d)",
		dir, pattern, exclude, from.Unix(), to.Add(profileSlice+time.Second).Unix())
}

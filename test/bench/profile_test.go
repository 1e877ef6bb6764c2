package main

import (
	"strings"
	"testing"
	"time"
)

func TestProfileCommandCoversTheFailoversAndTheirLastSlice(t *testing.T) {
	from := time.Unix(1000, 0)
	to := time.Unix(1030, 0)
	for _, tc := range []struct {
		who           string
		want, wantNot string
	}{
		{"candidates", "-name '*.pprof' ! -name 'kube-apiserver-*'", "-name 'kube-apiserver-*.pprof'"},
		{"kube-apiserver", "-name 'kube-apiserver-*.pprof'", "! -name"},
	} {
		cmd := profileCommand("/p", tc.who, from, to)
		if !strings.HasPrefix(cmd, "go tool pprof -top $(find /p ") || !strings.Contains(cmd, tc.want) || strings.Contains(cmd, tc.wantNot) {
			t.Errorf("%s: %q", tc.who, cmd)
		}
		// A slice's file is written when the slice ends: the last one ends up to a slice after `to`.
		if !strings.Contains(cmd, "-newermt @1000 ! -newermt @1036)") {
			t.Errorf("%s: %q does not cover 1000 to 1036", tc.who, cmd)
		}
	}
}

package main

import "testing"

// TestDemo runs `make demo`'s program end to end, so that the README's first command keeps working: an
// election, a crash failover and a graceful hand-off between three manager processes, each proven by the
// new leader's controller acting.
func TestDemo(t *testing.T) {
	if err := run(t.Context()); err != nil {
		t.Fatal(err)
	}
}

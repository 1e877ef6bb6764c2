package lifelock

import (
	"os"
	"regexp"
	"slices"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Every reason the core can put on an acquisition is one initMetrics exports at 0.
func TestAcquisitionReasonsAreAllInitialised(t *testing.T) {
	var used []string
	for v := podAlive; v <= podUnknownVerdict; v++ {
		if m := v.metric(); m != "unknown" {
			used = append(used, m)
		}
	}
	src, err := os.ReadFile("core.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`metric: "([a-z_]+)"`).FindAllStringSubmatch(string(src), -1) {
		used = append(used, m[1])
	}
	if len(used) < len(acquisitionReasons) {
		t.Fatalf("found %d reasons in use (%v), fewer than the %d listed: is core.go's form still metric: \"...\"?", len(used), used, len(acquisitionReasons))
	}
	for _, m := range used {
		if !slices.Contains(acquisitionReasons, m) {
			t.Errorf("reason %q is used but not in acquisitionReasons, so its series is missing until the first acquisition", m)
		}
	}

	// The series are on controller-runtime's registry, at 0, before any acquisition.
	const name = "metrics-test-lock"
	initMetrics(name)
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var exported []string
	for _, f := range families {
		if f.GetName() != "lifelock_acquisitions_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["name"] == name {
				exported = append(exported, labels["reason"])
				if v := m.GetCounter().GetValue(); v != 0 {
					t.Errorf("lifelock_acquisitions_total{reason=%q} starts at %v, want 0", labels["reason"], v)
				}
			}
		}
	}
	slices.Sort(exported)
	want := slices.Sorted(slices.Values(acquisitionReasons))
	if !slices.Equal(exported, want) {
		t.Errorf("lifelock_acquisitions_total{name=%q} exports reasons %v, want %v", name, exported, want)
	}
}

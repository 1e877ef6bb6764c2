package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseRequestTotals(t *testing.T) {
	text := `# HELP apiserver_request_total [STABLE] Counter of apiserver requests
# TYPE apiserver_request_total counter
apiserver_request_total{code="200",component="apiserver",dry_run="",group="coordination.k8s.io",resource="leases",scope="resource",subresource="",verb="GET",version="v1"} 40
apiserver_request_total{code="404",component="apiserver",dry_run="",group="coordination.k8s.io",resource="leases",scope="resource",subresource="",verb="GET",version="v1"} 2
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="status",verb="PUT",version="v1"} 7
apiserver_request_total{code="200",component="",dry_run="",group="",resource="",scope="",subresource="openapi/v3",verb="GET",version=""} 12
apiserver_request_duration_seconds_bucket{resource="leases",verb="GET",le="0.1"} 99
`
	got, err := parseRequestTotals([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	want := requestCounts{{"GET", "leases"}: 42, {"PUT", "pods/status"}: 7}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %v, want %v", k, got[k], v)
		}
	}
}

func TestParseRequestTotalsRejectsMalformedSamples(t *testing.T) {
	for _, line := range []string{
		`apiserver_request_total{verb="GET",resource="leases" 1`,
		`apiserver_request_total{verb="GET,resource="leases"} 1`,
		`apiserver_request_total{verb="GET",resource="leases"} one`,
	} {
		if _, err := parseRequestTotals([]byte(line + "\n")); err == nil {
			t.Errorf("%s: no error", line)
		}
	}
}

func TestRequestCountsMinusAndSum(t *testing.T) {
	before := requestCounts{{"GET", "leases"}: 10, {"PUT", "leases"}: 5}
	after := requestCounts{{"GET", "leases"}: 16, {"PUT", "leases"}: 5, {"POST", "configmaps"}: 2}
	d := after.minus(before)
	if len(d) != 2 || d[request{"GET", "leases"}] != 6 || d[request{"POST", "configmaps"}] != 2 {
		t.Fatalf("minus: %v", d)
	}
	if w := d.sum(request.isWrite); w != 2 {
		t.Errorf("writes: got %v, want 2", w)
	}
}

func TestPercentileIsNearestRank(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for q, want := range map[float64]time.Duration{0.5: 50 * time.Millisecond, 0.95: 95 * time.Millisecond, 0.99: 99 * time.Millisecond, 1: 100 * time.Millisecond} {
		if got := percentile(ds, q); got != want {
			t.Errorf("p%v: got %s, want %s", q*100, got, want)
		}
	}
	if got := percentile(ds[:30], 0.99); got != 100*time.Millisecond {
		t.Errorf("p99 of 30 samples is their maximum; got %s", got)
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("p50 of nothing: got %s", got)
	}
}

func TestRatio(t *testing.T) {
	for _, c := range []struct {
		other, base float64
		want        string
	}{{0, 0, "="}, {5, 0, "∞"}, {30, 10, "3×"}, {1, 3, "0.333×"}} {
		if got := ratio(c.other, c.base); got != c.want {
			t.Errorf("ratio(%v, %v) = %q, want %q", c.other, c.base, got, c.want)
		}
	}
}

func TestMarkdownComparesAgainstLife(t *testing.T) {
	mk := func(i impl, writes float64, crashMs int) *result {
		r := &result{Impl: i, N: 3, Window: 30 * time.Second, Groups: 1, Requests: requestCounts{}, Failovers: map[scenario][]sample{}}
		if writes > 0 {
			r.Requests[request{"PUT", "leases"}] = writes
		}
		for range 30 {
			r.Failovers[crash] = append(r.Failovers[crash], sample{Latency: time.Duration(crashMs) * time.Millisecond})
		}
		return r
	}
	rn := &run{Machine: "test machine", Cfg: config{ns: []int{3}, impls: allImpls, reps: 30, window: 30 * time.Second},
		Results: []*result{mk(life, 0, 20), mk(lease, 15, 15000), mk(oplib, 3, 2000)}}
	md := rn.markdown()
	for _, want := range []string{
		"| 3 | election writes / min | 0 | 30 | 6 | ∞ | ∞ |",
		"| 3 | crash failover p50 (ms) | 20 | 15000 | 2000 | 750× | 100× |",
		"| 3 | lease | PUT leases 30 | none |",
		"| 3 | life | none | none |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

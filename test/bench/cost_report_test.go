package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseGauge(t *testing.T) {
	text := []byte(`# HELP go_gc_heap_live_bytes Heap memory occupied by live objects that were marked by the previous GC.
# TYPE go_gc_heap_live_bytes gauge
go_gc_heap_live_bytes_extra 5
go_gc_heap_live_bytes 1.2345e+08
go_sched_goroutines_goroutines{state="waiting"} 7
go_sched_goroutines_goroutines 2425
`)
	for name, want := range map[string]float64{"go_gc_heap_live_bytes": 1.2345e8, "go_sched_goroutines_goroutines": 2425, "absent_metric": 0} {
		got, err := parseGauge(text, name)
		if err != nil || got != want {
			t.Errorf("parseGauge(%s) = %v, %v; want %v", name, got, err, want)
		}
	}
	if _, err := parseGauge([]byte("go_gc_heap_live_bytes lots\n"), "go_gc_heap_live_bytes"); err == nil {
		t.Error("a malformed value: no error")
	}
}

func TestParseCPULine(t *testing.T) {
	// user nice system idle iowait irq softirq steal guest guest_nice: guest time is already in user.
	busy, total, err := parseCPULine("cpu  100 10 50 800 20 0 5 15 7 0")
	if err != nil {
		t.Fatal(err)
	}
	if busy != 180 || total != 1000 {
		t.Errorf("busy, total = %d, %d; want 180, 1000", busy, total)
	}
	for _, line := range []string{"cpu0 1 2 3 4 5", "cpu 1 2", "cpu 1 two 3 4 5"} {
		if _, _, err := parseCPULine(line); err == nil {
			t.Errorf("%q: no error", line)
		}
	}
}

func TestDeltaRatio(t *testing.T) {
	for _, c := range []struct {
		other, base float64
		want        string
	}{{0, 0, "="}, {-3, 0, "="}, {-1, -2, "="}, {50, 0, "∞"}, {50, -2, "∞"}, {-2, 5, "0×"}, {0, 5, "0×"}, {90, 30, "3×"}} {
		if got := deltaRatio(c.other, c.base); got != c.want {
			t.Errorf("deltaRatio(%v, %v) = %q, want %q", c.other, c.base, got, c.want)
		}
	}
}

func testCostRun() *costRun {
	mk := func(i impl, locks int, puts, gets, cpuS float64, rssMiB int64, watches float64) *costWindow {
		w := &costWindow{Impl: i, Locks: locks, PerLock: min(locks, 3), Window: 30 * time.Second, Leaders: locks, Requests: requestCounts{},
			WatchesEnd: watches, APIServer: procStat{CPUSeconds: cpuS, RSSKiB: rssMiB * 1024}, HeapLiveBytes: 100 * mib,
			OwnLeaseWrites: 3, MachineBusy: 0.25, LoadAvg: "1.00 0.50 0.25"}
		if puts > 0 {
			w.Requests[request{"PUT", "leases"}] = puts
		}
		if gets > 0 {
			w.Requests[request{"GET", "leases"}] = gets
		}
		w.Watches = requestCounts{{"WATCH", "pods"}: watches / 2, {"WATCH", "leases"}: watches / 2}
		return w
	}
	return &costRun{
		Cfg:      costConfig{locks: 100, perLock: 3, window: 30 * time.Second},
		Baseline: mk(none, 0, 0, 1, 3, 300, 60),
		Windows: []*costWindow{
			mk(life, 100, 0, 1, 4, 340, 660),
			mk(lease, 100, 1500, 3001, 23, 330, 60),
			mk(oplib, 100, 400, 801, 8, 320, 60),
		},
	}
}

func TestCostMarkdownComparesWhatEachAdds(t *testing.T) {
	md := testCostRun().markdown("test machine", time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC), "`make bench`")
	for _, want := range []string{
		"## Cluster-scale cost: 100 locks × 3 candidates, idle",
		"2026-12-02 10:00 UTC on test machine by `make bench`: for each implementation, 100 locks with 3 candidates each (300 candidate processes)",
		"less kube-apiserver's renewals of its own identity Lease (6 / min in the baseline",
		// Requests scale from the 30 s window to one minute; the ratios divide the deltas.
		"| API requests / min, non-watch | 2 | 2 | 9002 | 2402 | 0 | +9000 | +2400 | ∞ | ∞ |",
		"| … of them writes / min | 0 | 0 | 3000 | 800 | 0 | +3000 | +800 | ∞ | ∞ |",
		"| watches open (end of window) | 60 | 660 | 60 | 60 | +600 | 0 | 0 | 0× | 0× |",
		"| kube-apiserver CPU (ms / min) | 6000 | 8000 | 46000 | 16000 | +2000 | +40000 | +10000 | 20× | 5× |",
		"| kube-apiserver RSS (MiB, end of window) | 300 | 340 | 330 | 320 | +40 | +30 | +20 | 0.75× | 0.5× |",
		"| lease | 100 × 3 | GET leases 6002, PUT leases 3000 | none | 25% | 1.00 0.50 0.25 |",
		"| life | 100 × 3 | GET leases 2 | WATCH leases 300, WATCH pods 300 | 25% | 1.00 0.50 0.25 |",
		"| none | 0 × 0 | GET leases 2 | – | 25% | 1.00 0.50 0.25 |",
		"(baseline, life, lease, oplib)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("cost markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestCostCSVs(t *testing.T) {
	cost, requests := testCostRun().costCSVs()
	if len(cost) != 5 {
		t.Fatalf("cost.csv has %d rows, want a header and 4 windows", len(cost))
	}
	col := map[string]int{}
	for k, name := range cost[0] {
		col[name] = k
	}
	for _, row := range cost[1:] {
		if len(row) != len(cost[0]) {
			t.Fatalf("row %v has %d fields, the header %d", row, len(row), len(cost[0]))
		}
	}
	lease := cost[3]
	for name, want := range map[string]string{"implementation": "lease", "locks": "100", "nonwatch_per_min": "9002", "write_requests": "1500",
		"apiserver_cpu_ms_per_min": "46000", "apiserver_rss_kib": "337920", "watches_open_end": "60", "machine_busy": "0.25"} {
		if got := lease[col[name]]; got != want {
			t.Errorf("cost.csv lease %s = %q, want %q", name, got, want)
		}
	}
	// A header, then the baseline's one kind of request, life's one and two each for lease and oplib.
	if len(requests) != 1+1+1+2+2 {
		t.Errorf("cost-requests.csv has %d rows: %v", len(requests), requests)
	}
}

func TestRunMarkdownWithTheCostScenarioOnly(t *testing.T) {
	rn := &run{Machine: "test machine", Cfg: config{cost: costConfig{locks: 100, perLock: 3, window: time.Minute}}, Cost: testCostRun(), How: "`go run . -cost-only`"}
	md := rn.markdown()
	if !strings.HasPrefix(md, "## Cluster-scale cost") || strings.Contains(md, "Failover latency") {
		t.Errorf("with only the cost scenario, results.md holds its section alone:\n%s", md)
	}
}

func TestCPUDeltaCountsWholeTicks(t *testing.T) {
	if got := cpuDelta(procStat{CPUSeconds: 0.11}, procStat{CPUSeconds: 0.03}); got != 0.08 {
		t.Errorf("cpuDelta = %v, want 0.08", got)
	}
}

func TestOwnLeaseWritesRenewedBetween(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	o := &ownLeaseWrites{renews: []time.Time{t0.Add(-time.Second), t0, t0.Add(10 * time.Second), t0.Add(20 * time.Second), t0.Add(30 * time.Second)}}
	if got := o.renewedBetween(t0, t0.Add(20*time.Second)); got != 2 {
		t.Errorf("renewedBetween = %d, want 2: after t0, up to t1 included", got)
	}
}

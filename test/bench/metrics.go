package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"

	"k8s.io/client-go/kubernetes"
)

// request names one kind of API request: its verb and its resource (with the subresource, if any).
type request struct{ Verb, Resource string }

func (r request) String() string { return r.Verb + " " + r.Resource }

// isWrite says whether the request changes state on the API server (including a write that fails, such as
// a create answered AlreadyExists: it still costs a write attempt).
func (r request) isWrite() bool {
	switch r.Verb {
	case "POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY":
		return true
	}
	return false
}

// requestCounts counts API requests by kind.
type requestCounts map[request]float64

// apiserverMetrics is what the benchmark reads from kube-apiserver's /metrics.
type apiserverMetrics struct {
	// Requests is apiserver_request_total: requests served so far. A watch counts once it has ended.
	Requests requestCounts
	// Watches is apiserver_longrunning_requests for the verb WATCH: the watches open now.
	Watches requestCounts
	// HeapLiveBytes is go_gc_heap_live_bytes, the heap kube-apiserver's last GC found live, and Goroutines
	// go_sched_goroutines_goroutines (0 if it does not expose them).
	HeapLiveBytes, Goroutines float64
}

// scrapeMetrics reads apiserver_request_total and apiserver_longrunning_requests from the API server.
func scrapeMetrics(ctx context.Context, c kubernetes.Interface) (apiserverMetrics, error) {
	raw, err := c.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return apiserverMetrics{}, fmt.Errorf("scraping the API server's /metrics: %w", err)
	}
	var m apiserverMetrics
	if m.Requests, err = parseSamples(raw, "apiserver_request_total"); err != nil {
		return m, err
	}
	if m.Watches, err = parseSamples(raw, "apiserver_longrunning_requests"); err != nil {
		return m, err
	}
	for r := range m.Watches {
		if r.Verb != "WATCH" {
			delete(m.Watches, r)
		}
	}
	if m.HeapLiveBytes, err = parseGauge(raw, "go_gc_heap_live_bytes"); err != nil {
		return m, err
	}
	if m.Goroutines, err = parseGauge(raw, "go_sched_goroutines_goroutines"); err != nil {
		return m, err
	}
	return m, nil
}

// parseGauge returns the value of the metric without labels called name, or 0 if there is none.
func parseGauge(text []byte, name string) (float64, error) {
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		value, ok := strings.CutPrefix(sc.Text(), name+" ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return 0, fmt.Errorf("sample %q: %w", sc.Text(), err)
		}
		return v, nil
	}
	return 0, sc.Err()
}

// parseRequestTotals sums apiserver_request_total by verb and resource; see parseSamples.
func parseRequestTotals(text []byte) (requestCounts, error) {
	return parseSamples(text, "apiserver_request_total")
}

// parseSamples sums the samples of a metric labelled by verb and resource (apiserver_request_total,
// apiserver_longrunning_requests) by those two, over its other labels (code, scope, group, version, ...).
// Requests for no resource (discovery, /metrics itself) are left out: they are not an election's.
func parseSamples(text []byte, name string) (requestCounts, error) {
	counts := requestCounts{}
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	metric := name + "{"
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, metric) {
			continue
		}
		end := strings.LastIndexByte(line, '}')
		if end < 0 {
			return nil, fmt.Errorf("malformed sample %q", line)
		}
		labels, err := parseLabels(line[len(metric):end])
		if err != nil {
			return nil, fmt.Errorf("sample %q: %w", line, err)
		}
		value, err := strconv.ParseFloat(strings.TrimSpace(line[end+1:]), 64)
		if err != nil {
			return nil, fmt.Errorf("sample %q: %w", line, err)
		}
		if labels["resource"] == "" {
			continue
		}
		r := request{Verb: labels["verb"], Resource: labels["resource"]}
		if sub := labels["subresource"]; sub != "" {
			r.Resource += "/" + sub
		}
		counts[r] += value
	}
	return counts, sc.Err()
}

// parseLabels parses the inside of a Prometheus label set: name="value",name="value".
func parseLabels(s string) (map[string]string, error) {
	labels := map[string]string{}
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq < 0 || eq+1 >= len(s) || s[eq+1] != '"' {
			return nil, fmt.Errorf("expected name=\"value\" at %q", s)
		}
		name := s[:eq]
		s = s[eq+2:]
		var value strings.Builder
		i := 0
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
			}
			value.WriteByte(s[i])
		}
		if i == len(s) {
			return nil, fmt.Errorf("unterminated value of %s", name)
		}
		labels[name] = value.String()
		s = strings.TrimPrefix(s[i+1:], ",")
	}
	return labels, nil
}

// minus returns c - before, kind by kind.
func (c requestCounts) minus(before requestCounts) requestCounts {
	d := requestCounts{}
	for r, v := range c {
		if n := v - before[r]; n != 0 {
			d[r] = n
		}
	}
	return d
}

// sum adds up the counts that match.
// top lists the n most frequent kinds of request, most first.
func (c requestCounts) top(n int) string {
	kinds := slices.SortedFunc(maps.Keys(c), func(a, b request) int { return cmp.Compare(c[b], c[a]) })
	var parts []string
	for _, r := range kinds[:min(n, len(kinds))] {
		if c[r] > 0 {
			parts = append(parts, fmt.Sprintf("%s %.0f", r, c[r]))
		}
	}
	return strings.Join(parts, ", ")
}

func (c requestCounts) sum(match func(request) bool) float64 {
	var n float64
	for r, v := range c {
		if match(r) {
			n += v
		}
	}
	return n
}

// procStat is what the kernel reports of a process's resource use.
type procStat struct {
	CPUSeconds float64 // user + system
	RSSKiB     int64
}

// clockTicks is USER_HZ, the unit of the CPU times in /proc/<pid>/stat: 100 on every Linux architecture Go
// supports.
const clockTicks = 100

// readProcStat reads /proc/<pid>/stat and /proc/<pid>/status.
func readProcStat(pid int) (procStat, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	// The command name (field 2) is in parentheses and may hold spaces: count fields after the last ')'.
	rest := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(rest) < 13 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	utime, err1 := strconv.ParseInt(rest[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(rest[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: cpu times: %w", pid, errors.Join(err1, err2))
	}
	ps := procStat{CPUSeconds: float64(utime+stime) / clockTicks}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procStat{}, err
	}
	for line := range strings.Lines(string(status)) {
		if rss, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rss)
			if len(f) > 0 {
				ps.RSSKiB, err = strconv.ParseInt(f[0], 10, 64)
			}
			break
		}
	}
	return ps, err
}

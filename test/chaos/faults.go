// Package chaos is lifelock's chaos test suite. This file holds its network fault injector: TCP proxies
// that sit between a candidate process and the API server and can slow, swallow or reset the traffic on
// demand. The proxies are Toxiproxy's, run in-process as a library.
package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"k8s.io/client-go/tools/clientcmd"
)

// FaultKind names a network fault that a Proxy can inject.
type FaultKind string

const (
	// Latency delays every chunk of data by 300 ms ± 100 ms, in both directions, so a request and its
	// response each take 200–400 ms longer.
	Latency FaultKind = "latency"
	// Blackhole drops all data in both directions while leaving the connections open: new connections
	// are still accepted, but requests get no answer and hang until the client gives up.
	Blackhole FaultKind = "blackhole"
	// Reset makes connections fail abruptly: as soon as data flows on a connection, the proxy closes both
	// of its sides, with a TCP RST on the connections opened while the fault is in place.
	Reset FaultKind = "reset"
)

// toxic is one Toxiproxy toxic to add, on one direction of the traffic.
type toxic struct {
	Name       string         `json:"name"`
	Type       string         `json:"type"`
	Stream     string         `json:"stream"`
	Toxicity   float32        `json:"toxicity"`
	Attributes map[string]any `json:"attributes"`
}

// toxics returns the toxics that make up the fault kind, one per direction.
func (k FaultKind) toxics() ([]toxic, error) {
	var typ string
	var attrs map[string]any
	switch k {
	case Latency:
		typ, attrs = "latency", map[string]any{"latency": 300, "jitter": 100}
	case Blackhole:
		typ, attrs = "timeout", map[string]any{"timeout": 0}
	case Reset:
		typ, attrs = "reset_peer", map[string]any{"timeout": 0}
	default:
		return nil, fmt.Errorf("unknown fault kind %q", string(k))
	}
	var ts []toxic
	for _, stream := range []string{"upstream", "downstream"} {
		ts = append(ts, toxic{
			Name:       "chaos_" + string(k) + "_" + stream,
			Type:       typ,
			Stream:     stream,
			Toxicity:   1,
			Attributes: attrs,
		})
	}
	return ts, nil
}

// Faults runs an in-process Toxiproxy server and the proxies made with it. Its methods are safe for
// concurrent use.
type Faults struct {
	server *toxiproxy.ApiServer
}

// NewFaults returns a Faults with no proxies yet. Its server has its own metrics registry and discards its
// logs; it serves no HTTP API, the proxies are driven through Go calls only.
func NewFaults() *Faults {
	metrics := toxiproxy.NewMetricsContainer(prometheus.NewRegistry())
	return &Faults{server: toxiproxy.NewServer(metrics, zerolog.Nop())}
}

// Close stops every proxy that f made, closing their listeners and connections.
func (f *Faults) Close() {
	_ = f.server.Collection.Clear() // never fails
}

// Proxy starts a proxy called name, which must be unique within f, that listens on a free port of
// 127.0.0.1 and forwards every connection to upstream (host:port). It starts without faults.
func (f *Faults) Proxy(name, upstream string) (*Proxy, error) {
	tp := toxiproxy.NewProxy(f.server, name, "127.0.0.1:0", upstream)
	if err := f.server.Collection.Add(tp, true); err != nil {
		return nil, fmt.Errorf("starting proxy %q to %s: %w", name, upstream, err)
	}
	// Start has replaced port 0 with the port it got.
	return &Proxy{faults: f, proxy: tp, addr: tp.Listen, active: map[FaultKind][]string{}}, nil
}

// Proxy is one TCP proxy made by Faults.Proxy. Its methods are safe for concurrent use.
type Proxy struct {
	faults *Faults
	proxy  *toxiproxy.Proxy
	addr   string

	mu     sync.Mutex
	active map[FaultKind][]string // the names of the toxics in place, by the fault they make up
}

// Addr returns the address the proxy listens on, as host:port.
func (p *Proxy) Addr() string { return p.addr }

// Inject puts the fault kind in place on the proxy, for the connections already open as well as for new
// ones, until Heal. Injecting a kind that is already in place does nothing; different kinds add up.
func (p *Proxy) Inject(kind FaultKind) error {
	ts, err := kind.toxics()
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.active[kind]; ok {
		return nil
	}
	var added []string
	for _, t := range ts {
		body, err := jsonReader(t)
		if err != nil {
			return err
		}
		if _, err := p.proxy.Toxics.AddToxicJson(body); err != nil {
			// Leave no half of the fault behind.
			for _, name := range added {
				_ = p.proxy.Toxics.RemoveToxic(context.Background(), name)
			}
			return fmt.Errorf("injecting %s on proxy %q (%s toxic on the %s stream): %w", kind, p.proxy.Name, t.Type, t.Stream, err)
		}
		added = append(added, t.Name)
	}
	p.active[kind] = added
	return nil
}

// Heal removes every fault that Inject put in place. Removing a Blackhole also closes the connections
// that were open through it (Toxiproxy's timeout toxic ends its streams on removal); clients reconnect.
func (p *Proxy) Heal() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for kind, names := range p.active {
		for _, name := range names {
			if err := p.proxy.Toxics.RemoveToxic(context.Background(), name); err != nil && !errors.Is(err, toxiproxy.ErrToxicNotFound) {
				errs = append(errs, fmt.Errorf("healing %s on proxy %q (toxic %s): %w", kind, p.proxy.Name, name, err))
			}
		}
		delete(p.active, kind)
	}
	return errors.Join(errs...)
}

// Close stops the proxy for good, closing its listener and connections, and forgets it, so its name can be
// used again.
func (p *Proxy) Close() {
	_ = p.faults.server.Collection.Remove(p.proxy.Name) // fails only if it is already gone
}

// KubeconfigThrough reads the kubeconfig at kubeconfigPath, points the server URL of each of its clusters
// at proxyAddr (host:port) instead, and writes the result to outPath. The scheme, the path and the TLS
// settings are kept, so a client still verifies the API server's certificate: proxyAddr must be an
// address the certificate is valid for, such as 127.0.0.1:port for envtest's API server.
func KubeconfigThrough(kubeconfigPath, proxyAddr, outPath string) error {
	if _, _, err := net.SplitHostPort(proxyAddr); err != nil {
		return fmt.Errorf("proxy address %q: %w", proxyAddr, err)
	}
	cfg, err := clientcmd.LoadFromFile(kubeconfigPath)
	if err != nil {
		return fmt.Errorf("reading kubeconfig: %w", err)
	}
	// File references (certificate authority, client certificate and key) are relative to the file they
	// were read from: make them absolute, so they still hold from outPath.
	if err := clientcmd.ResolveLocalPaths(cfg); err != nil {
		return fmt.Errorf("resolving the paths in kubeconfig %s: %w", kubeconfigPath, err)
	}
	if len(cfg.Clusters) == 0 {
		return fmt.Errorf("kubeconfig %s has no clusters", kubeconfigPath)
	}
	for name, cluster := range cfg.Clusters {
		u, err := url.Parse(cluster.Server)
		if err != nil {
			return fmt.Errorf("kubeconfig %s, cluster %q: server URL %q: %w", kubeconfigPath, name, cluster.Server, err)
		}
		if u.Scheme == "" || u.Host == "" {
			return fmt.Errorf("kubeconfig %s, cluster %q: server URL %q has no scheme or host", kubeconfigPath, name, cluster.Server)
		}
		u.Host = proxyAddr
		cluster.Server = u.String()
	}
	if err := clientcmd.WriteToFile(*cfg, outPath); err != nil {
		return fmt.Errorf("writing kubeconfig %s: %w", outPath, err)
	}
	return nil
}

// jsonReader encodes v as JSON for AddToxicJson.
func jsonReader(v any) (*bytes.Reader, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding toxic: %w", err)
	}
	return bytes.NewReader(b), nil
}

package chaos

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// These tests run plain `testing`, beside the Ginkgo suite of TestChaos: they need no control plane.

// echoServer starts a TCP server on 127.0.0.1 that writes back whatever it reads, and returns its address.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				defer func() { _ = c.Close() }()
				_, _ = io.Copy(c, c)
			})
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// newProxy returns a proxy to a fresh echo server, closed at the end of the test.
func newProxy(t *testing.T) *Proxy {
	t.Helper()
	f := NewFaults()
	t.Cleanup(f.Close)
	p, err := f.Proxy(t.Name(), echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("dialing the proxy: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// roundTrip sends a message on c and reads the echo, within timeout; it returns how long that took.
func roundTrip(c net.Conn, timeout time.Duration) (time.Duration, error) {
	msg := fmt.Appendf(nil, "ping %d", time.Now().UnixNano())
	start := time.Now()
	if err := c.SetDeadline(start.Add(timeout)); err != nil {
		return 0, err
	}
	if _, err := c.Write(msg); err != nil {
		return 0, fmt.Errorf("write: %w", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return time.Since(start), fmt.Errorf("read: %w", err)
	}
	took := time.Since(start)
	if !bytes.Equal(got, msg) {
		return took, fmt.Errorf("echo %q, want %q", got, msg)
	}
	return took, nil
}

// waitFor polls cond every 20 ms until it returns nil, and fails the test with its last error after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		last = cond()
		return last == nil, nil
	})
	if err != nil {
		t.Fatalf("%s: still not after %s: %v", what, timeout, last)
	}
}

// healthy waits until a new connection through p round-trips in under fast.
func healthy(t *testing.T, p *Proxy, fast time.Duration) {
	t.Helper()
	waitFor(t, 5*time.Second, "a fast round trip through "+p.Addr(), func() error {
		c, err := net.DialTimeout("tcp", p.Addr(), time.Second)
		if err != nil {
			return err
		}
		defer func() { _ = c.Close() }()
		took, err := roundTrip(c, time.Second)
		if err != nil {
			return err
		}
		if took >= fast {
			return fmt.Errorf("round trip took %s", took)
		}
		return nil
	})
}

func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

func TestProxyForwards(t *testing.T) {
	p := newProxy(t)
	if host, _, err := net.SplitHostPort(p.Addr()); err != nil || host != "127.0.0.1" {
		t.Fatalf("Addr() = %q, want 127.0.0.1:port", p.Addr())
	}
	c := dial(t, p.Addr())
	for range 3 {
		took, err := roundTrip(c, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("round trip: %s", took)
	}
	if err := p.Heal(); err != nil { // nothing to heal
		t.Fatal(err)
	}
	if err := p.Inject("bogus"); err == nil {
		t.Fatal("Inject of an unknown kind succeeded")
	}
}

func TestLatency(t *testing.T) {
	p := newProxy(t)
	old := dial(t, p.Addr()) // open before the fault: it must be slowed too
	base, err := roundTrip(old, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Inject(Latency); err != nil {
		t.Fatal(err)
	}
	if err := p.Inject(Latency); err != nil { // again: no-op
		t.Fatal(err)
	}
	for name, c := range map[string]net.Conn{"existing connection": old, "new connection": dial(t, p.Addr())} {
		for range 2 {
			took, err := roundTrip(c, 3*time.Second)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			t.Logf("%s: round trip %s with latency (%s without)", name, took, base)
			if took < 250*time.Millisecond {
				t.Errorf("%s: round trip took %s with latency, want ≥ 250ms", name, took)
			}
		}
	}
	if err := p.Heal(); err != nil {
		t.Fatal(err)
	}
	healthy(t, p, 100*time.Millisecond)
	took, err := roundTrip(old, 2*time.Second)
	if err != nil {
		t.Fatalf("existing connection after Heal: %v", err)
	}
	t.Logf("existing connection after Heal: round trip %s", took)
}

func TestBlackhole(t *testing.T) {
	p := newProxy(t)
	old := dial(t, p.Addr())
	if _, err := roundTrip(old, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := p.Inject(Blackhole); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]net.Conn{"existing connection": old, "new connection": dial(t, p.Addr())} {
		took, err := roundTrip(c, 500*time.Millisecond)
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("%s: round trip through a blackhole: took %s, err %v; want a timeout", name, took, err)
		}
		t.Logf("%s: timed out after %s: %v", name, took, err)
	}
	if err := p.Heal(); err != nil {
		t.Fatal(err)
	}
	healthy(t, p, 100*time.Millisecond)
	// Removing Toxiproxy's timeout toxic ends the streams that went through it: the old connection is
	// closed by the proxy rather than left hanging.
	waitFor(t, 5*time.Second, "the blackholed connection to be closed", func() error {
		_ = old.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		_, err := old.Read(make([]byte, 64))
		var ne net.Error
		if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
			return fmt.Errorf("still open: %w", err)
		}
		t.Logf("blackholed connection after Heal: %v", err)
		return nil
	})
}

func TestReset(t *testing.T) {
	p := newProxy(t)
	old := dial(t, p.Addr())
	if _, err := roundTrip(old, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := p.Inject(Reset); err != nil {
		t.Fatal(err)
	}
	// A connection opened before the fault is closed as soon as data flows (FIN or RST).
	took, err := roundTrip(old, 2*time.Second)
	if !isReset(err) && !errors.Is(err, io.EOF) {
		t.Fatalf("existing connection: round trip took %s, err %v; want a reset or EOF", took, err)
	}
	t.Logf("existing connection: failed after %s: %v", took, err)
	// A connection opened during the fault is reset (RST: Toxiproxy sets SO_LINGER 0 on it).
	c := dial(t, p.Addr())
	took, err = roundTrip(c, 2*time.Second)
	if !isReset(err) {
		t.Fatalf("new connection: round trip took %s, err %v; want connection reset by peer", took, err)
	}
	t.Logf("new connection: failed after %s: %v", took, err)
	if err := p.Heal(); err != nil {
		t.Fatal(err)
	}
	healthy(t, p, 100*time.Millisecond)
}

func TestFaultsAddUpAndHealRemovesAll(t *testing.T) {
	p := newProxy(t)
	if err := p.Inject(Latency); err != nil {
		t.Fatal(err)
	}
	if err := p.Inject(Blackhole); err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Addr())
	if _, err := roundTrip(c, 800*time.Millisecond); err == nil {
		t.Fatal("round trip through latency and a blackhole succeeded")
	}
	if n := len(p.proxy.Toxics.GetToxicArray()); n != 4 {
		t.Fatalf("%d toxics in place, want 4", n)
	}
	if err := p.Heal(); err != nil {
		t.Fatal(err)
	}
	if n := len(p.proxy.Toxics.GetToxicArray()); n != 0 {
		t.Fatalf("%d toxics left after Heal, want 0", n)
	}
	healthy(t, p, 100*time.Millisecond)
}

func TestProxyClose(t *testing.T) {
	f := NewFaults()
	t.Cleanup(f.Close)
	upstream := echoServer(t)
	p, err := f.Proxy("same", upstream)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Proxy("same", upstream); err == nil {
		t.Fatal("a second proxy with the same name started")
	}
	p.Close()
	if c, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		_ = c.Close()
		t.Fatal("the closed proxy still accepts connections")
	}
	p2, err := f.Proxy("same", upstream)
	if err != nil {
		t.Fatalf("reusing the name of a closed proxy: %v", err)
	}
	healthy(t, p2, 100*time.Millisecond)
}

// writeKubeconfig writes a kubeconfig with the given clusters, and a user and a context for each.
func writeKubeconfig(t *testing.T, path string, clusters map[string]*clientcmdapi.Cluster) {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	for name, c := range clusters {
		cfg.Clusters[name] = c
		cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: "token-" + name}
		cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
		cfg.CurrentContext = name
	}
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
}

func TestKubeconfigThrough(t *testing.T) {
	dir := t.TempDir()
	ca := []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), ca, 0o600); err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(dir, "in.kubeconfig")
	writeKubeconfig(t, in, map[string]*clientcmdapi.Cluster{
		"envtest": {Server: "https://127.0.0.1:6443", CertificateAuthorityData: ca},
		"other":   {Server: "https://127.0.0.1:7443/prefix", CertificateAuthority: "ca.crt", TLSServerName: "apiserver"},
	})
	out := filepath.Join(t.TempDir(), "out.kubeconfig")
	if err := KubeconfigThrough(in, "127.0.0.1:40001", out); err != nil {
		t.Fatal(err)
	}
	got, err := clientcmd.LoadFromFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if s := got.Clusters["envtest"].Server; s != "https://127.0.0.1:40001" {
		t.Errorf("envtest server %q", s)
	}
	if d := got.Clusters["envtest"].CertificateAuthorityData; !bytes.Equal(d, ca) {
		t.Errorf("envtest CA data %q, want %q", d, ca)
	}
	other := got.Clusters["other"]
	if other.Server != "https://127.0.0.1:40001/prefix" {
		t.Errorf("other server %q", other.Server)
	}
	if other.CertificateAuthority != filepath.Join(dir, "ca.crt") || other.TLSServerName != "apiserver" {
		t.Errorf("other TLS settings: CA %q, server name %q", other.CertificateAuthority, other.TLSServerName)
	}
	if got.AuthInfos["envtest"].Token != "token-envtest" || got.Contexts["other"].Cluster != "other" || got.CurrentContext == "" {
		t.Errorf("users or contexts lost: %+v %+v %q", got.AuthInfos, got.Contexts, got.CurrentContext)
	}

	if err := KubeconfigThrough(filepath.Join(dir, "missing"), "127.0.0.1:1", out); err == nil {
		t.Error("a missing kubeconfig was accepted")
	}
	if err := KubeconfigThrough(in, "127.0.0.1", out); err == nil {
		t.Error("a proxy address without a port was accepted")
	}
}

// TestKubeconfigThroughTLS connects, with a client built from a rewritten kubeconfig, to an HTTPS server
// through a proxy: the certificate, valid for 127.0.0.1, still verifies.
func TestKubeconfigThroughTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprintf(w, `{"path":%q}`, r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	f := NewFaults()
	t.Cleanup(f.Close)
	p, err := f.Proxy("apiserver", strings.TrimPrefix(srv.URL, "https://"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in"), filepath.Join(dir, "out")
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	writeKubeconfig(t, in, map[string]*clientcmdapi.Cluster{"test": {Server: srv.URL, CertificateAuthorityData: ca}})
	if err := KubeconfigThrough(in, p.Addr(), out); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", out)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://"+p.Addr() {
		t.Fatalf("client host %q, want https://%s", cfg.Host, p.Addr())
	}
	cfg.Timeout = 500 * time.Millisecond
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	get := func() error {
		resp, err := hc.Get(cfg.Host + "/version")
		if err != nil {
			return err
		}
		defer func() { _ = resp.Body.Close() }()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK || string(body) != `{"path":"/version"}` {
			return fmt.Errorf("%s: %s", resp.Status, body)
		}
		return nil
	}
	if err := get(); err != nil {
		t.Fatalf("GET through the proxy: %v", err)
	}
	if err := p.Inject(Blackhole); err != nil {
		t.Fatal(err)
	}
	if err := get(); err == nil {
		t.Fatal("GET through a blackhole succeeded")
	} else {
		t.Logf("GET through a blackhole: %v", err)
	}
	if err := p.Heal(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "GET through the healed proxy", get)
}

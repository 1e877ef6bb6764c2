package manageropts

import (
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/lifelock/lifelock/pkg/lifelock"
)

func TestModeFlag(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		want    Mode
		wantErr bool
	}{
		{nil, "", false},
		{[]string{"--leader-elect-mode=life"}, ModeLife, false},
		{[]string{"--leader-elect-mode=lease"}, ModeLease, false},
		{[]string{"--leader-elect-mode=forever"}, "", true},
	} {
		var o Options
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		o.BindFlags(fs)
		err := fs.Parse(tc.args)
		if (err != nil) != tc.wantErr || o.Mode != tc.want {
			t.Errorf("std flag %v: mode %q, err %v", tc.args, o.Mode, err)
		}
		var p Options
		pfs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		p.AddFlags(pfs)
		err = pfs.Parse(tc.args)
		if (err != nil) != tc.wantErr || p.Mode != tc.want {
			t.Errorf("pflag %v: mode %q, err %v", tc.args, p.Mode, err)
		}
	}
}

// Cases that Apply decides without talking to the API server; life mode with leader election is proven in
// test/e2e against a real one.
func TestApplyWithoutLock(t *testing.T) {
	cfg := &rest.Config{Host: "https://127.0.0.1:1"}
	d := 3 * time.Second
	for _, tc := range []struct {
		name    string
		o       Options
		mo      manager.Options
		wantErr string
	}{
		{name: "lease mode is unchanged", o: Options{Mode: ModeLease}, mo: manager.Options{LeaderElection: true, LeaderElectionID: "x", RetryPeriod: &d}},
		{name: "default mode without leader election is unchanged", o: Options{}, mo: manager.Options{LeaderElectionID: "x"}},
		{name: "lease mode without leader election is unchanged", o: Options{Mode: ModeLease}, mo: manager.Options{LeaderElectionID: "x"}},
		{name: "explicit life mode without leader election", o: Options{Mode: ModeLife}, mo: manager.Options{LeaderElectionID: "x"}, wantErr: "add --leader-elect, or drop --leader-elect-mode"},
		{name: "a lock kind without leader election", o: Options{Lock: lifelock.Options{Kind: lifelock.KindConfigMap}}, mo: manager.Options{LeaderElectionID: "x"}, wantErr: "add --leader-elect, or drop --leader-elect-lock-kind"},
		{name: "the out-of-service policy without leader election", o: Options{Lock: lifelock.Options{TakeOverFromOutOfServiceNodes: true}}, mo: manager.Options{LeaderElectionID: "x"}, wantErr: "add --leader-elect, or drop --leader-elect-take-over-from-out-of-service-nodes"},
		{name: "life mode needs an ID", o: Options{}, mo: manager.Options{LeaderElection: true}, wantErr: "LeaderElectionID is empty"},
		{name: "invalid mode", o: Options{Mode: "forever"}, mo: manager.Options{LeaderElection: true, LeaderElectionID: "x"}, wantErr: "use life or lease"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := tc.o.Apply(cfg, tc.mo)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Apply err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.LeaderElectionResourceLockInterface != nil || got.RetryPeriod != tc.mo.RetryPeriod || got.LeaderElectionReleaseOnCancel {
				t.Errorf("Apply changed the options: %+v", got)
			}
		})
	}
}

func TestLockFlags(t *testing.T) {
	for _, tc := range []struct {
		args         []string
		want         lifelock.Kind
		outOfService bool
		wantErr      bool
	}{
		{nil, "", false, false},
		{[]string{"--leader-elect-lock-kind=lease"}, lifelock.KindLease, false, false},
		{[]string{"--leader-elect-lock-kind=configmap"}, lifelock.KindConfigMap, false, false},
		{[]string{"--leader-elect-lock-kind=endpoints"}, "", false, true},
		{[]string{"--leader-elect-take-over-from-out-of-service-nodes"}, "", true, false},
	} {
		var o Options
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		o.BindFlags(fs)
		err := fs.Parse(tc.args)
		if (err != nil) != tc.wantErr || o.Lock.Kind != tc.want || o.Lock.TakeOverFromOutOfServiceNodes != tc.outOfService {
			t.Errorf("std flag %v: kind %q, out-of-service %v, err %v", tc.args, o.Lock.Kind, o.Lock.TakeOverFromOutOfServiceNodes, err)
		}
		var p Options
		pfs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		p.AddFlags(pfs)
		err = pfs.Parse(tc.args)
		if (err != nil) != tc.wantErr || p.Lock.Kind != tc.want || p.Lock.TakeOverFromOutOfServiceNodes != tc.outOfService {
			t.Errorf("pflag %v: kind %q, out-of-service %v, err %v", tc.args, p.Lock.Kind, p.Lock.TakeOverFromOutOfServiceNodes, err)
		}
	}
}

func TestLockKindNeedsLifeMode(t *testing.T) {
	o := Options{Mode: ModeLease, Lock: lifelock.Options{Kind: lifelock.KindConfigMap}}
	_, _, err := o.Apply(&rest.Config{Host: "https://127.0.0.1:1"}, manager.Options{LeaderElection: true, LeaderElectionID: "x"})
	if err == nil || !strings.Contains(err.Error(), "--leader-elect-lock-kind=configmap applies to life mode only") {
		t.Fatalf("Apply err = %v", err)
	}
}

// BindFlags and AddFlags keep what code set before them as the flags' defaults.
func TestFlagsKeepValuesSetInCode(t *testing.T) {
	o := Options{Lock: lifelock.Options{TakeOverFromOutOfServiceNodes: true, Kind: lifelock.KindConfigMap}}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	o.BindFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if !o.Lock.TakeOverFromOutOfServiceNodes || o.Lock.Kind != lifelock.KindConfigMap {
		t.Fatalf("BindFlags reset values set in code: %+v", o.Lock)
	}
	p := Options{Lock: lifelock.Options{TakeOverFromOutOfServiceNodes: true}}
	pfs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	p.AddFlags(pfs)
	if err := pfs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if !p.Lock.TakeOverFromOutOfServiceNodes {
		t.Fatal("AddFlags reset TakeOverFromOutOfServiceNodes set in code")
	}
}

package lifelock

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestValidateLockName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"my-operator-lock", true},
		{"a.b.c", true},
		{"", false},
		{"Upper", false},
		{"under_score", false},
		{strings.Repeat("a", 254), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := validateLockName(tc.name)
			if (err == nil) != tc.ok {
				t.Fatalf("validateLockName(%q) = %v", tc.name, err)
			}
			if err != nil && !errors.Is(err, ErrInvalidLockName) {
				t.Errorf("error %v does not wrap ErrInvalidLockName", err)
			}
		})
	}
}

func TestOptionsDefaultsAndValidation(t *testing.T) {
	o := Options{}.setDefaults()
	if *o.AcquisitionGrace != DefaultAcquisitionGrace || *o.AcquireSpread != DefaultAcquireSpread || o.RetryPeriod != DefaultRetryPeriod || o.Logger == nil {
		t.Errorf("defaults = %+v", o)
	}
	if DefaultAcquisitionGrace <= DefaultRenewDeadline+DefaultRetryPeriod {
		t.Errorf("DefaultAcquisitionGrace %s does not cover the self-fencing bound", DefaultAcquisitionGrace)
	}
	zero := time.Duration(0)
	if got := (Options{AcquisitionGrace: &zero}).setDefaults(); *got.AcquisitionGrace != 0 {
		t.Errorf("an explicit zero grace was replaced by %s", *got.AcquisitionGrace)
	}
	if got := (Options{AcquireSpread: &zero}).setDefaults(); *got.AcquireSpread != 0 {
		t.Errorf("an explicit zero spread was replaced by %s", *got.AcquireSpread)
	}
	neg := -time.Second
	for _, bad := range []Options{{AcquisitionGrace: &neg}, {AcquireSpread: &neg}, {RetryPeriod: -1}, {Namespace: "Not A Namespace"}} {
		if err := bad.validate(); err == nil {
			t.Errorf("validate(%+v) = nil", bad)
		}
	}
}

// A follower whose acquisition is proven tries within the spread; one that is not waits half a spread
// more, so that a proven candidate most often takes a free lock first and nobody waits the grace for
// nothing.
func TestSpreadDelayLetsProvenCandidatesGoFirst(t *testing.T) {
	const spread = 100 * time.Millisecond
	for range 1000 {
		if d := spreadDelay(spread, true); d < 0 || d >= spread {
			t.Fatalf("proven: %s, want in [0, %s)", d, spread)
		}
		if d := spreadDelay(spread, false); d < spread/2 || d >= spread*3/2 {
			t.Fatalf("unproven: %s, want in [%s, %s)", d, spread/2, spread*3/2)
		}
	}
	if d := spreadDelay(0, false); d != 0 {
		t.Fatalf("no spread: %s, want 0", d)
	}
}

func TestNextSpread(t *testing.T) {
	const base = 100 * time.Millisecond
	for _, c := range []struct {
		name     string
		cur      time.Duration
		lostRace bool
		want     time.Duration
	}{
		{"a lost race doubles it", base, true, 2 * base},
		{"up to 16 × AcquireSpread", 12 * base, true, 16 * base},
		{"standing down shrinks it by a quarter", base, false, 75 * time.Millisecond},
		{"down to AcquireSpread/10", 12 * time.Millisecond, false, 10 * time.Millisecond},
	} {
		if got := nextSpread(c.cur, base, c.lostRace); got != c.want {
			t.Errorf("%s: nextSpread(%s, %s, %t) = %s, want %s", c.name, c.cur, base, c.lostRace, got, c.want)
		}
	}
	if got := nextSpread(0, 0, true); got != 0 {
		t.Errorf("a zero AcquireSpread adapted to %s; it must stay zero", got)
	}
}

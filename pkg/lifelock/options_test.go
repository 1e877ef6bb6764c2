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

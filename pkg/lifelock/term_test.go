package lifelock

import (
	"errors"
	"strconv"
	"testing"

	"k8s.io/apimachinery/pkg/util/resourceversion"
)

func TestTermStringRoundTrip(t *testing.T) {
	for _, term := range []Term{
		{Number: 0, LockUID: "0b7c1c9e-8a55-4e7e-9d0e-5bb1c3a1f001", Revision: "1"},
		{Number: 3, LockUID: "uid", Revision: "123456789012345678901234567890"},
		{Number: 2147483647, LockUID: "uid", Revision: "99"},
	} {
		t.Run(term.String(), func(t *testing.T) {
			want := strconv.Itoa(int(term.Number)) + "/" + term.LockUID + "/" + term.Revision
			if s := term.String(); s != want {
				t.Fatalf("String = %q, want %q", s, want)
			}
			got, err := ParseTerm(term.String())
			if err != nil {
				t.Fatalf("ParseTerm(%q): %v", term, err)
			}
			if got != term {
				t.Errorf("ParseTerm(%q) = %+v, want %+v", term, got, term)
			}
			if got.IsZero() {
				t.Error("a parsed term is zero")
			}
		})
	}
	if !(Term{}).IsZero() {
		t.Error("Term{}.IsZero() = false")
	}
}

func TestParseTermErrors(t *testing.T) {
	for _, tc := range []struct {
		name, stamp string
		revision    bool // the error is about the revision (wraps resourceversion.InvalidResourceVersion)
	}{
		{"empty", "", false},
		{"two parts", "1/uid", false},
		{"four parts", "1/uid/5/6", false},
		{"number not a number", "one/uid/5", false},
		{"number beyond int32", "2147483648/uid/5", false},
		{"empty number", "/uid/5", false},
		{"the zero Term's stamp", Term{}.String(), false},
		{"negative number", "-1/uid/5", false},
		{"empty lock UID", "1//5", false},
		{"empty revision", "1/uid/", true},
		{"revision not a number", "1/uid/abc", true},
		{"revision with a leading zero", "1/uid/05", true},
		{"revision zero", "1/uid/0", true},
		{"negative revision", "1/uid/-5", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseTerm(tc.stamp)
			if err == nil {
				t.Fatalf("ParseTerm(%q) = %+v, want an error", tc.stamp, got)
			}
			if !got.IsZero() {
				t.Errorf("ParseTerm(%q) returned %+v with its error, want the zero Term", tc.stamp, got)
			}
			var invalid resourceversion.InvalidResourceVersion
			if errors.As(err, &invalid) != tc.revision {
				t.Errorf("ParseTerm(%q) = %v: about the revision: %v, want %v", tc.stamp, err, !tc.revision, tc.revision)
			}
		})
	}
}

func TestTermBefore(t *testing.T) {
	term := func(n int32, uid, rv string) Term { return Term{Number: n, LockUID: uid, Revision: rv} }
	for _, tc := range []struct {
		name   string
		t, u   Term
		before bool
	}{
		{"a takeover: next number, greater revision", term(0, "l1", "100"), term(1, "l1", "150"), true},
		{"revisions of different lengths compare as numbers, not strings", term(0, "l1", "99"), term(1, "l1", "100"), true},
		{"the reverse", term(1, "l1", "100"), term(0, "l1", "99"), false},
		{"a re-created lock starts over at number 0 but is still later", term(4, "l1", "900"), term(0, "l2", "1000"), true},
		{"a higher number on an older lock object is still earlier", term(4, "l1", "900"), term(0, "l2", "901"), true},
		{"the same term is not before itself", term(2, "l1", "500"), term(2, "l1", "500"), false},
		{"long revisions", term(0, "l1", "18446744073709551615"), term(0, "l1", "18446744073709551616"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.t.Before(tc.u)
			if err != nil {
				t.Fatalf("%s.Before(%s): %v", tc.t, tc.u, err)
			}
			if got != tc.before {
				t.Errorf("%s.Before(%s) = %v, want %v", tc.t, tc.u, got, tc.before)
			}
			if tc.before {
				if after, err := tc.u.Before(tc.t); err != nil || after {
					t.Errorf("%s.Before(%s) = %v, %v; want false: Before is a strict order", tc.u, tc.t, after, err)
				}
			}
		})
	}

	for _, tc := range []struct{ t, u Term }{
		{term(0, "l", "1"), Term{}},
		{Term{}, term(0, "l", "1")},
		{term(0, "l", "x"), term(0, "l", "1")},
	} {
		if _, err := tc.t.Before(tc.u); err == nil {
			t.Errorf("%q.Before(%q) did not fail on a malformed revision", tc.t, tc.u)
		}
	}
}

package httpapi

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

func TestDecodeMissing(t *testing.T) {
	paths := func(n int) string {
		ps := make([]string, n)
		for i := range ps {
			ps[i] = fmt.Sprintf("%q", fmt.Sprintf("/nix/store/%032d-p", i))
		}
		return `{"paths":[` + strings.Join(ps, ",") + `]}`
	}
	cases := []struct {
		name, body string
		n          int   // paths decoded, when it succeeds
		fail       bool  // it must fail
		is         error // the failure wraps this, when set
	}{
		{"empty list", `{"paths":[]}`, 0, false, nil},
		{"no field", `{}`, 0, false, nil},
		{"some", paths(3), 3, false, nil},
		{"at the cap", paths(MaxMissingPaths), MaxMissingPaths, false, nil},
		{"over the cap", paths(MaxMissingPaths + 1), 0, true, ErrTooLarge},
		{"a long path", `{"paths":["/nix/store/` + strings.Repeat("x", maxPathLen) + `"]}`, 0, true, ErrBadRequest},
		{"an unknown field", `{"paths":[],"more":1}`, 0, true, ErrBadRequest},
		{"not an object", `["/nix/store/x"]`, 0, true, ErrBadRequest},
		{"not strings", `{"paths":[1]}`, 0, true, nil},
		{"truncated", `{"paths":["/nix/store/x"`, 0, true, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := decodeMissing(strings.NewReader(c.body))
			switch {
			case c.fail && err == nil:
				t.Fatalf("decoded %d paths, want an error", len(got))
			case c.fail && c.is != nil && !errors.Is(err, c.is):
				t.Fatalf("err = %v, want %v", err, c.is)
			case !c.fail && (err != nil || got == nil || len(got) != c.n):
				t.Fatalf("decoded %v (%v), want %d paths, never nil", len(got), err, c.n)
			}
		})
	}
}

func TestParseBuildQuery(t *testing.T) {
	id := strings.Repeat("ab", 16)
	ok := map[string]int{
		"":                         DefaultBuildsLimit,
		"limit=1":                  1,
		"limit=1000":               MaxBuildsLimit,
		"state=queued&tag=a=b":     DefaultBuildsLimit,
		"after=" + id + "&limit=7": 7,
	}
	for q, limit := range ok {
		v, _ := url.ParseQuery(q)
		bq, msg := parseBuildQuery(v)
		if msg != "" || bq.limit != limit {
			t.Errorf("%q: limit %d, %q; want %d", q, bq.limit, msg, limit)
		}
	}
	for _, q := range []string{"limit=0", "limit=1001", "limit=-1", "limit=x", "state=done", "tag=ab", "after=xyz", "after=" + strings.ToUpper(id)} {
		v, _ := url.ParseQuery(q)
		if _, msg := parseBuildQuery(v); msg == "" {
			t.Errorf("%q was taken", q)
		}
	}
}

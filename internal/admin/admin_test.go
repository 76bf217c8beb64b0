package admin

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"warmpool/internal/pool"
)

type fixedStatus struct{}

func (fixedStatus) Status() pool.Status { return pool.Status{FirstReady: true, Ready: 1, Desired: 1} }

// With a token, only the probes and the page's HTML are open; /metrics may be opened alone;
// pprof is served only when asked for, and then behind the token.
func TestAdminAccess(t *testing.T) {
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("m 1\n")) })
	for _, tc := range []struct {
		name   string
		access Access
		path   string
		token  string
		want   int
	}{
		{"probe, no token", Access{Token: "t"}, "/livez", "", 200},
		{"readiness, no token", Access{Token: "t"}, "/readyz", "", 200},
		{"page, no token", Access{Token: "t"}, "/", "", 200},
		{"status, no token", Access{Token: "t"}, "/status", "", 401},
		{"status, wrong token", Access{Token: "t"}, "/status", "x", 401},
		{"status, token", Access{Token: "t"}, "/status", "t", 200},
		{"metrics, no token", Access{Token: "t"}, "/metrics", "", 401},
		{"metrics open", Access{Token: "t", MetricsOpen: true}, "/metrics", "", 200},
		{"pprof off", Access{Token: "t"}, "/debug/pprof/", "t", 404},
		{"pprof on, no token", Access{Token: "t", Pprof: true}, "/debug/pprof/", "", 401},
		{"pprof on, token", Access{Token: "t", Pprof: true}, "/debug/pprof/", "t", 200},
		{"no token set: status open", Access{}, "/status", "", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := New(fixedStatus{}, 1, metrics, nil, tc.access)
			req := httptest.NewRequest("GET", tc.path, nil)
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("%s: %d, want %d (%s)", tc.path, rec.Code, tc.want, rec.Body)
			}
			if rec.Code == 401 && rec.Header().Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
		})
	}
}

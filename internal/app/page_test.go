package app_test

import (
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var updateScreenshot = flag.Bool("update-screenshot", false, "write docs/status.png from the page test")

func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	t.Skip("no chromium on this machine: apt-get install chromium (CI installs it)")
	return ""
}

// headless runs Chromium on url with extra flags and returns its standard output.
func headless(t *testing.T, bin, url string, extra ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir()}, extra...)
	out, err := exec.CommandContext(ctx, bin, append(args, url)...).Output()
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	return string(out)
}

var (
	updatesRe = regexp.MustCompile(`<body data-updates="(\d+)"`)
	pointsRe  = regexp.MustCompile(`id="chart"[^>]*data-points="(\d+)"`)
)

func pageState(t *testing.T, dom string) (updates, points, readyRows int) {
	t.Helper()
	u, p := updatesRe.FindStringSubmatch(dom), pointsRe.FindStringSubmatch(dom)
	if u == nil || p == nil {
		t.Fatalf("page did not render its state:\n%.2000s", dom)
	}
	updates, _ = strconv.Atoi(u[1])
	points, _ = strconv.Atoi(p[1])
	return updates, points, strings.Count(dom, `data-state="ready"`)
}

// The status page in a real browser: it loads, shows the workers, refreshes, and its chart
// grows as requests arrive in new seconds.
func TestStatusPageInHeadlessChromium(t *testing.T) {
	bin := chromium(t)
	e := startServer(t, testConfig())
	e.waitReady()
	page := "http://" + e.srv.AdminAddr() + "/"

	// Requests spread over two distinct seconds give the chart two points.
	traffic := func() {
		start := time.Now().Unix()
		for time.Now().Unix() < start+2 {
			e.get("/")
		}
	}
	traffic()
	dom := headless(t, bin, page, "--virtual-time-budget=3000", "--dump-dom")
	updates, points, ready := pageState(t, dom)
	if updates < 2 || points < 2 || ready != 2 {
		t.Fatalf("first load: %d refreshes, %d chart points, %d ready rows", updates, points, ready)
	}
	for _, want := range []string{"warm-up: ENABLED", "first requests P50 / P99", "<path"} {
		if !strings.Contains(dom, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	traffic()
	_, points2, _ := pageState(t, headless(t, bin, page, "--virtual-time-budget=3000", "--dump-dom"))
	if points2 <= points {
		t.Fatalf("chart did not grow with new traffic: %d then %d points", points, points2)
	}

	shot := filepath.Join(t.TempDir(), "status.png")
	if *updateScreenshot {
		shot, _ = filepath.Abs("../../docs/status.png")
		os.MkdirAll(filepath.Dir(shot), 0o755)
	}
	headless(t, bin, page, "--virtual-time-budget=3000", "--window-size=1200,860", "--hide-scrollbars", "--screenshot="+shot)
	if fi, err := os.Stat(shot); err != nil || fi.Size() < 10_000 {
		t.Fatalf("screenshot: %v", err)
	}
}

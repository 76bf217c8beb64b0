package main

import (
	"bufio"
	"os"
	"strings"
	"testing"
	"time"

	"warmpool/internal/config"
)

// The systemd unit agrees with what warmpool does: it notifies (Type=notify), reloads on
// SIGHUP, signals warmpool alone first (KillMode=mixed), and waits at least shutdown_delay +
// graceful_timeout, with the defaults, before SIGKILL.
func TestSystemdUnitAgreesWithWarmpool(t *testing.T) {
	f, err := os.Open("../../deploy/systemd/warmpool.service")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	unit := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && !strings.HasPrefix(k, "#") {
			unit[k] = v
		}
	}
	for k, want := range map[string]string{"Type": "notify", "KillMode": "mixed", "KillSignal": "SIGTERM", "NoNewPrivileges": "true"} {
		if unit[k] != want {
			t.Errorf("%s=%q, want %q", k, unit[k], want)
		}
	}
	if !strings.Contains(unit["ExecReload"], "-HUP $MAINPID") || !strings.Contains(unit["ExecStart"], "warmpool run --config") {
		t.Errorf("ExecReload=%q ExecStart=%q", unit["ExecReload"], unit["ExecStart"])
	}
	stop, err := time.ParseDuration(unit["TimeoutStopSec"])
	d := config.Default()
	if need := d.ShutdownDelay.Duration + d.Worker.GracefulTimeout.Duration; err != nil || stop < need+5*time.Second {
		t.Errorf("TimeoutStopSec=%q: want at least shutdown_delay + graceful_timeout (%s) plus a margin", unit["TimeoutStopSec"], need)
	}
}

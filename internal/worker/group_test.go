package worker

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"warmpool/internal/testutil"
)

// The tree walk finds the worker's group as the full scan of /proc does: the worker and the
// child that stayed in its group, not the one that left it (setsid).
func TestGroupProcessesWalkMatchesTheScan(t *testing.T) {
	logs := testutil.NewLogs(t)
	w := New(Spec{ID: 1, Command: []string{"/bin/sh", "-c", "sleep 1000 & setsid sleep 1000 & echo started $! {socket}; wait"},
		SocketDir: t.TempDir(), Logger: logs.Logger()})
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		w.Stop(ctx)
		w.Wait()
	}()
	line := logs.Wait(testutil.Contains("started"), 5*time.Second)
	if left, err := strconv.Atoi(strings.Fields(line.Message)[1]); err == nil {
		defer syscall.Kill(left, syscall.SIGKILL) // out of the group: the worker's stop does not reach it
	}
	pids := func(procs []groupProcess) []int {
		var out []int
		for _, p := range procs {
			out = append(out, p.pid)
		}
		slices.Sort(out)
		return out
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		walked, err := walkGroup(w.PID())
		if err != nil {
			t.Fatal(err)
		}
		scanned, err := scanGroup(w.PID())
		if err != nil {
			t.Fatal(err)
		}
		// The setsid child is in the group until it has run setsid: wait for the group to settle.
		if len(walked) == 2 && slices.Equal(pids(walked), pids(scanned)) {
			if !slices.Contains(pids(walked), w.PID()) {
				t.Fatalf("the worker itself is missing: %v", pids(walked))
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("walk found %v, scan found %v; want the worker and one child", pids(walked), pids(scanned))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

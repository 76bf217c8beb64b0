package worker_test

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"warmpool/internal/testutil"
	"warmpool/internal/worker"
)

// A worker that forks: stopping it must reach its child through the process group.
func TestStopReachesTheWholeProcessGroup(t *testing.T) {
	logs := testutil.NewLogs(t)
	w := worker.New(worker.Spec{
		ID: 7, Command: []string{"/bin/sh", "-c", "sleep 1000 & echo child=$! {socket}; wait"},
		SocketDir: t.TempDir(), Logger: logs.Logger(),
	})
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	line := logs.Wait(testutil.Contains("child="), 5*time.Second)
	if line.Attrs["worker"] != "7" || line.Attrs["stream"] != "stdout" {
		t.Fatalf("output not tagged: %v", line)
	}
	child, err := strconv.Atoi(strings.Fields(strings.TrimPrefix(line.Message, "child="))[0])
	if err != nil {
		t.Fatal(err)
	}
	if rss, err := w.RSS(); err != nil || rss <= 0 {
		t.Fatalf("rss of the group: %d %v", rss, err)
	}
	pidfd, err := unix.PidfdOpen(child, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pidfd)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	w.Stop(ctx)
	w.Wait()
	if w.State() != worker.Stopped {
		t.Fatalf("state after Stop: %s", w.State())
	}
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	if n, err := unix.Poll(fds, 5000); err != nil || n != 1 {
		t.Fatalf("the worker's child survived the stop (poll %d %v)", n, err)
	}
}

// A worker that ignores SIGTERM is killed when the stop's context ends.
func TestStopKillsAfterDeadline(t *testing.T) {
	logs := testutil.NewLogs(t)
	w := worker.New(worker.Spec{
		ID: 1, Command: []string{"/bin/sh", "-c", "trap '' TERM; echo up {socket}; while :; do sleep 0.05; done"},
		SocketDir: t.TempDir(), Logger: logs.Logger(),
	})
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	logs.Wait(testutil.Contains("up "), 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	w.Stop(ctx)
	w.Wait()
	logs.Wait(testutil.Msg("worker did not exit in time; killing it"), time.Second)
	if !strings.Contains(worker.DescribeExit(w.ExitErr()), "killed") {
		t.Fatalf("exit: %v", w.ExitErr())
	}
}

func TestSpawnFailureIsReported(t *testing.T) {
	w := worker.New(worker.Spec{ID: 1, Command: []string{"/nonexistent/app", "{socket}"}, SocketDir: t.TempDir()})
	err := w.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/app") {
		t.Fatalf("spawn error: %v", err)
	}
	<-w.Done()
	if w.State() != worker.Failed {
		t.Fatalf("state: %s", w.State())
	}
}

// A worker whose child outlives it while holding stdout must not hold up the exit.
func TestExitIsNotHeldByAChildHoldingStdout(t *testing.T) {
	logs := testutil.NewLogs(t)
	w := worker.New(worker.Spec{
		ID: 3, Command: []string{"/bin/sh", "-c", "setsid sleep 5 & echo started {socket}; exit 4"},
		SocketDir: t.TempDir(), Logger: logs.Logger(),
	})
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("exit not reported while a child holds stdout")
	}
	w.Wait()
	logs.Wait(testutil.Contains("started "), time.Second)
	if !strings.Contains(worker.DescribeExit(w.ExitErr()), "exit status 4") {
		t.Fatalf("exit: %v", w.ExitErr())
	}
}

// A failure before the process exists still ends the worker, so nobody waits on Done forever.
func TestStartFailureBeforeSpawnClosesDone(t *testing.T) {
	w := worker.New(worker.Spec{ID: 4, Command: []string{"app", "{socket}"}, Notify: true,
		SocketDir: filepath.Join(t.TempDir(), "missing")}) // the notify socket cannot be created
	if err := w.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "notify socket") {
		t.Fatalf("start: %v", err)
	}
	select {
	case <-w.Done():
	case <-time.After(time.Second):
		t.Fatal("Done not closed after a failed Start")
	}
	if w.State() != worker.Failed {
		t.Fatalf("state: %s", w.State())
	}
}

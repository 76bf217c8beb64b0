package testworker

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// RunTests is the TestMain of a package whose tests re-execute the test binary as a worker:
// as a worker it serves (as a fake Python template, EnvFakeTemplate, it speaks warmpool's
// control protocol), otherwise it runs the tests and checks that no goroutine leaked.
func RunTests(m *testing.M) {
	if fakeTemplateActive() {
		fakeTemplateMain()
		return
	}
	if Active() {
		Main()
		return
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(IsolateLearnedState()))
}

// IsolateLearnedState points the default place of warmpool's learned state (learn.
// DefaultStatePath) at a temporary directory for the tests and the processes they start, so
// that no test reads what another run learned, nor writes into the user's state directory. The
// function returned removes it.
func IsolateLearnedState() func(exitCode int) {
	dir, err := os.MkdirTemp("", "warmpool-test-state-")
	if err != nil {
		panic(err)
	}
	os.Setenv("XDG_STATE_HOME", dir)
	os.Unsetenv("STATE_DIRECTORY")
	return func(int) { os.RemoveAll(dir) }
}

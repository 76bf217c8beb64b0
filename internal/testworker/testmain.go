package testworker

import (
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
	goleak.VerifyTestMain(m)
}

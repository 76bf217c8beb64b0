package proxy

import (
	"testing"

	"go.uber.org/goleak"

	"warmpool/internal/testworker"
)

func TestMain(m *testing.M) {
	if testworker.Active() {
		testworker.Main()
		return
	}
	goleak.VerifyTestMain(m)
}

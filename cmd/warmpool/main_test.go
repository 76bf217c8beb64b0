package main

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"warmpool/internal/guard"
	"warmpool/internal/testworker"
)

// envMain makes the re-executed test binary act as the warmpool command.
const envMain = "WP_TEST_MAIN"

func TestMain(m *testing.M) {
	guard.RunIfKeeper()
	if testworker.Active() {
		testworker.Main()
		return
	}
	if os.Getenv(envMain) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	goleak.VerifyTestMain(m)
}

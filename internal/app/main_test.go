package app_test

import (
	"testing"

	"warmpool/internal/testworker"
)

func TestMain(m *testing.M) { testworker.RunTests(m) }

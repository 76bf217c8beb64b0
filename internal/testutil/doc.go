// Package testutil helps warmpool's tests synchronise on events: a slog handler that records
// every log record and lets a test wait for the one it expects.
package testutil

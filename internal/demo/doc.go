// Package demo is the built-in demo: a worker app whose first request burns CPU while holding a
// process-wide lock (like a cold import on the request path), and the config that runs it under
// warmpool with frequent recycling, so a newcomer sees warm recycling with nothing installed.
package demo

// Package telemetry makes cold starts visible: Prometheus metrics on a registry passed in
// (every request labelled with whether it was among the first requests of its worker), the
// warm-up effectiveness check that compares a new worker's first requests with the pool's
// steady latency for the same path, and the JSON access log.
package telemetry

// Package pool is the supervisor. It keeps worker.count ready workers, and it is the only place
// that admits a worker into rotation: every worker, whatever made it (first start, crash restart,
// recycle, reload, scale-up), boots and passes its warm-up before admit puts it in.
//
// Recycling is surge-first: a worker due for recycling (max_requests, max_lifetime, max_rss,
// reload) stays in rotation until its replacement is admitted; only then is it drained and
// stopped. All state changes happen on one goroutine, the event loop.
package pool

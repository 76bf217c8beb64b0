// Package pyfork runs Python WSGI and ASGI apps in workers forked from a warm template.
//
// For each generation a template process (helper.py, embedded in warmpool and written to its
// private runtime directory) imports the app and serves the warm-up plan, one request at a
// time. It then closes what must not cross a fork, freezes the garbage collector's objects,
// and checks that it runs a single thread. Every new worker is then a fork of it: the pool asks
// the Templates launcher for a process, the template forks, and the child is adopted by warmpool
// (a child subreaper), which reaps and supervises it like any other worker.
//
// When no template can fork (it runs threads, died, or was not warm within warmup.timeout),
// the worker is started as a fresh process of the same helper instead: loudly, with a WARN line,
// a metric and a note in the status.
package pyfork

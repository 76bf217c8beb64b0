// Package warmup is the warm-up plan and its execution against one worker: declared requests
// sent privately to that worker alone, each checked against its expected statuses, so that a
// worker only enters rotation once its slow first-request work has been done and verified.
package warmup

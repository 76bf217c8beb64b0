package pool

import (
	"errors"

	"warmpool/internal/learn"
	"warmpool/internal/pyfork"
	"warmpool/internal/warmup"
)

// learning reports whether traffic extends the warm-up now (a learner, and warmup.learn).
func (p *Pool) learning() bool { return p.learner != nil && p.cfg.Warmup.Learn }

// learned is what the learner has for a plan or template built now; nothing when learning is
// off.
func (p *Pool) learned() learn.Build {
	if !p.learning() {
		return learn.Build{}
	}
	return p.learner.Current()
}

func (p *Pool) learnSocket() string {
	if !p.learning() {
		return ""
	}
	return p.learner.ReportSocket()
}

// withLearned is the plan with the learned requests after the operator's (the plan itself when
// there are none, or the warm-up is off).
func (p *Pool) withLearned(reqs []learn.Request) *warmup.Plan {
	if len(reqs) == 0 || !p.cfg.Warmup.Enabled {
		return p.plan
	}
	plan := *p.plan
	plan.Learned = make([]warmup.Request, len(reqs))
	for i, r := range reqs {
		plan.Learned[i] = warmup.Request{Method: r.Method, Path: r.Path, Host: r.Host, Repeat: 1}
	}
	return &plan
}

// workerPlan is the warm-up plan of a worker spawned now: learned requests dropped since the
// last one are left out.
func (p *Pool) workerPlan() *warmup.Plan {
	if !p.learning() {
		return p.plan
	}
	return p.withLearned(p.learner.Requests())
}

// planned is the operator's plan as the learner knows requests.
func planned(plan *warmup.Plan) []learn.Request {
	out := make([]learn.Request, len(plan.Requests))
	for i, r := range plan.Requests {
		out[i] = learn.Request{Method: r.Method, Path: r.Path}
	}
	return out
}

// learnedImports takes a template's report on its learned modules (from its goroutine).
func (p *Pool) learnedImports(im pyfork.Imported) {
	if p.learner == nil {
		return
	}
	p.learner.Preloaded(im.Preloaded, im.Implied)
	for _, d := range im.Dropped {
		p.learner.DropModule(d.Module, d.Reason)
	}
}

// startRebuild starts a template of the next generation with what was learned, while the
// current one keeps forking; the workers roll to it once it is warm (onRebuilt).
func (p *Pool) startRebuild() {
	if !p.learning() || !p.cfg.Worker.IsPython() || p.shuttingDown || p.rebuilding != 0 ||
		p.halted != "" || !p.templates.Ready(p.generation) {
		return // the learner asks again each second while it is due
	}
	b, reason, ok := p.learner.TakeRebuild()
	if !ok {
		return
	}
	p.rebuilding = p.generation + 1
	p.log.Info("rebuilding the template with what traffic taught: the workers roll to it once it is warm",
		"generation", p.rebuilding, "new", reason, "learned_modules", len(b.Modules), "learned_requests", len(b.Requests))
	p.templates.Begin(pyfork.GenerationSpec{Gen: p.rebuilding, Config: p.cfg, Plan: p.withLearned(b.Requests),
		Env: workerEnv(p.env, p.cfg.Worker.Env), Nice: p.nice, Learned: b.Modules, LearnSocket: p.learnSocket(), Candidate: true})
}

// onRebuilt rolls the workers to a rebuild's template once it is ready; a rebuild that failed
// changes nothing (the template that worked keeps forking).
func (p *Pool) onRebuilt(ev rebuilt) {
	if ev.gen != p.rebuilding {
		return // discarded by a reload
	}
	p.rebuilding = 0
	p.learner.RebuildDone(ev.err)
	if ev.err != nil {
		p.log.Warn("the template rebuild failed: the template that worked keeps forking the workers", "generation", ev.gen, "error", ev.err)
		return
	}
	p.generation = ev.gen
	p.templates.Adopt(ev.gen)
	p.log.Info("the rebuilt template is ready: rolling every worker to it, warm-first", "generation", p.generation)
	p.rollTo(ReasonRebuild)
}

// dropRebuild stops a rebuild under way (a reload builds a template with everything anyway).
func (p *Pool) dropRebuild() {
	if p.rebuilding == 0 {
		return
	}
	p.templates.Discard(p.rebuilding)
	p.learner.RebuildDone(errors.New("superseded by a reload"))
	p.generation = max(p.generation, p.rebuilding)
	p.rebuilding = 0
}

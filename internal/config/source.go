package config

// SourceKind is the layer a value came from, lowest first.
type SourceKind int

// The layers, lowest first: each overrides the ones before it.
const (
	FromDefault SourceKind = iota
	FromFile
	FromEnv
	FromFlag
)

// Source says where an effective value came from.
type Source struct {
	Kind SourceKind
	// Where is "file:line", the environment variable's name or the flag.
	Where string
}

func (s Source) String() string {
	switch s.Kind {
	case FromFile:
		return s.Where
	case FromEnv:
		return "env " + s.Where
	case FromFlag:
		return "flag " + s.Where
	}
	return "default"
}

// Loaded is an effective configuration with the source of every value.
type Loaded struct {
	Config  Config
	sources map[string]Source
	// envToken is WARMPOOL_ADMIN_TOKEN from the environment layer ("" when unset).
	envToken string
}

// Source is where the value of key ("worker.max_requests", "warmup.request[0].path") came from.
func (l *Loaded) Source(key string) Source {
	if s, ok := l.sources[key]; ok {
		return s
	}
	return Source{Kind: FromDefault}
}

// Explicit reports whether key was set by the operator rather than left at its default.
func (l *Loaded) Explicit(key string) bool { return l.Source(key).Kind != FromDefault }

// Loaded wraps a programmatic config (tests, the demo): every value counts as a default.
func (c *Config) Loaded() *Loaded {
	l := &Loaded{Config: *c}
	l.Config.Warmup.Requests = append([]WarmupRequest(nil), c.Warmup.Requests...)
	l.applyRequestDefaults()
	return l
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"warmpool/internal/learn"
)

// learnedCommand prints what warmpool learned from traffic (warmup.learn) as config to commit.
type learnedCommand struct{ stdout io.Writer }

func (c *learnedCommand) Run(_ context.Context, args []string) error {
	flags := newFlagSet("learned")
	var cf configFlags
	cf.register(flags)
	state := flags.String("state", "", "read this state file (default: the config's warmup.learn_state, or its default place)")
	asJSON := flags.Bool("json", false, "print it as JSON, as /status shows it under \"learned\"")
	if err := parseFlags(flags, args); err != nil {
		return err
	}
	path, identity := *state, ""
	if path == "" {
		l, err := cf.load()
		if err != nil {
			return configError{err}
		}
		path, identity = learn.StatePath(&l.Config), learn.AppIdentity(&l.Config)
		if path == "" {
			return usageError{`warmup.learn_state = "off": nothing learned is kept in a file; the running server's /status shows it under "learned"`}
		}
	}
	st, saved, err := learn.ReadState(path, identity)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("nothing learned at %s yet: a running warmpool writes it a few seconds after it learns something (warmup.learn)", path)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	fmt.Fprintf(c.stdout, "# What warmpool learned from traffic (%s, saved %s).\n", path, saved.Local().Format(time.DateTime))
	fmt.Fprintln(c.stdout, "# Committed to the config, it warms a restart or another machine from its first request.")
	fmt.Fprintln(c.stdout)
	st.WriteConfig(c.stdout)
	return nil
}

package main

import (
	"context"
	"log/slog"

	"warmpool/internal/app"
	"warmpool/internal/config"
)

type runCommand struct{ log *slog.Logger }

func (c *runCommand) Run(ctx context.Context, args []string) error {
	fs := newFlagSet("run")
	path := fs.String("config", "warmpool.toml", "the TOML config file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return usageError{err.Error()}
	}
	if err := cfg.Validate(); err != nil {
		return usageError{"invalid config " + *path + ":\n" + err.Error()}
	}
	return app.Run(ctx, &cfg, c.log)
}

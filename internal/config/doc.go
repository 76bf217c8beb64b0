// Package config holds warmpool's configuration: the schema with its defaults, strict TOML
// loading that rejects unknown keys with their position, and validation that names the setting
// and why it is wrong.
package config

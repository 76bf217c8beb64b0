// Package migrate reads the configuration of another application server (a gunicorn config
// file, read the way gunicorn reads it, with the app's Python; a uWSGI .ini file) into
// Settings, and writes them as a commented warmpool config that `warmpool check` accepts:
// every setting mapped says what it became and why, every setting not mapped is listed with
// the reason. `warmpool import` is its command.
package migrate

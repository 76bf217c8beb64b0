package learn

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"warmpool/internal/config"
)

// stateVersion is the state file's format; a file of another version is ignored.
const stateVersion = 1

// stateFile is the state file's content.
type stateFile struct {
	Version  int           `json:"version"`
	Identity string        `json:"identity"`
	SavedAt  time.Time     `json:"saved_at"`
	Requests []*pathStat   `json:"requests"`
	Modules  []*moduleStat `json:"modules"`
}

// StatePath is where the learned state of cfg's app is kept: warmup.learn_state, else its
// default place (DefaultStatePath); "" for "off" (memory only).
func StatePath(cfg *config.Config) string {
	switch cfg.Warmup.LearnState {
	case "":
		return DefaultStatePath(AppIdentity(cfg))
	case "off":
		return ""
	default:
		return cfg.Warmup.LearnState
	}
}

// AppIdentity names cfg's app for its state file (identity).
func AppIdentity(cfg *config.Config) string {
	return identity(cfg.Worker.Dir, cfg.Worker.Python.App, cfg.Worker.Command)
}

// identity names an app: the same directory and the same app or command.
func identity(dir string, app string, command []string) string {
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	sum := sha256.Sum256([]byte(dir + "\x00" + app + "\x00" + strings.Join(command, "\x00")))
	return hex.EncodeToString(sum[:4])
}

// DefaultStatePath is where the state of the app named identity is kept unless warmup.learn_state
// says otherwise: in systemd's StateDirectory when the unit has one, else in the XDG state
// directory ($XDG_STATE_HOME, or ~/.local/state) under warmpool/, else in the temporary
// directory (kept across restarts, not across reboots).
func DefaultStatePath(identity string) string {
	name := "learned-" + identity + ".json"
	if dir, _, _ := strings.Cut(os.Getenv("STATE_DIRECTORY"), ":"); dir != "" {
		return filepath.Join(dir, name)
	}
	if dir := os.Getenv("XDG_STATE_HOME"); dir != "" {
		return filepath.Join(dir, "warmpool", name)
	}
	if home, err := os.UserHomeDir(); err == nil && home != "/" {
		return filepath.Join(home, ".local", "state", "warmpool", name)
	}
	return filepath.Join(os.TempDir(), "warmpool-"+name)
}

// ReadState reads a state file for `warmpool learned`: what it holds, as a Status, and when it
// was saved. identity, unless "", must be the file's app.
func ReadState(path, identity string) (Status, time.Time, error) {
	l := New(Options{StatePath: path, Identity: identity})
	saved, err := l.loadFile(identity != "")
	if err != nil {
		return Status{}, time.Time{}, err
	}
	return l.Status(), saved, nil
}

// load reads the state file, if any, into an empty learner: what was learned is learned again.
func (l *Learner) load() error {
	_, err := l.loadFile(true)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

func (l *Learner) loadFile(checkIdentity bool) (saved time.Time, err error) {
	if l.opts.StatePath == "" {
		return time.Time{}, nil
	}
	data, err := os.ReadFile(l.opts.StatePath)
	if err != nil {
		return time.Time{}, err
	}
	var st stateFile
	if err := json.Unmarshal(data, &st); err != nil {
		return time.Time{}, fmt.Errorf("%s: %w", l.opts.StatePath, err)
	}
	if st.Version != stateVersion {
		return time.Time{}, fmt.Errorf("%s is of format version %d, not %d", l.opts.StatePath, st.Version, stateVersion)
	}
	if checkIdentity && st.Identity != l.opts.Identity {
		return time.Time{}, fmt.Errorf("%s belongs to another app (identity %s, this one is %s)", l.opts.StatePath, st.Identity, l.opts.Identity)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ps := range st.Requests {
		if ps == nil || len(l.paths) >= maxPaths || learnablePath(ps.Path) != "" || !learnableMethod(ps.Method) {
			continue
		}
		l.paths[ps.Method+" "+ps.Path] = ps
	}
	for _, ms := range st.Modules {
		if ms == nil || len(l.modules) >= maxTracked || !validModule(ms.Name) {
			continue
		}
		l.modules[ms.Name] = ms
		l.seq = max(l.seq, ms.Seq)
	}
	return st.SavedAt, nil
}

// save writes the state file whole (a temporary file renamed over it: a crash leaves the old
// one or the new one).
func (l *Learner) save() error {
	if l.opts.StatePath == "" {
		return nil
	}
	l.mu.Lock()
	st := stateFile{Version: stateVersion, Identity: l.opts.Identity, SavedAt: time.Now().UTC()}
	for _, ps := range l.paths {
		if ps.ColdHits > 0 || ps.Dropped != "" {
			c := *ps
			if len(ps.first) > 0 {
				c.FirstNS = median(ps.first)
			}
			if ps.steady > 0 {
				c.SteadyNS = ps.steady
			}
			st.Requests = append(st.Requests, &c)
		}
	}
	for _, ms := range l.modules {
		c := *ms
		st.Modules = append(st.Modules, &c)
	}
	l.dirty = false
	l.mu.Unlock()
	sortState(&st)
	data, err := json.MarshalIndent(&st, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(l.opts.StatePath)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".learned-*.json")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), l.opts.StatePath)
}

func sortState(st *stateFile) {
	slices.SortFunc(st.Requests, func(a, b *pathStat) int { return strings.Compare(a.Method+" "+a.Path, b.Method+" "+b.Path) })
	slices.SortFunc(st.Modules, func(a, b *moduleStat) int { return a.Seq - b.Seq })
}

package main

import (
	"bufio"
	"fmt"
	"slices"
	"strings"

	"github.com/smx-mta/smx/cmd/smxd/conf"
	"github.com/smx-mta/smx/cmd/smxd/control"
	"github.com/smx-mta/smx/log/maillog"
)

// reload rereads smx.conf and the maps (SIGHUP, smxctl reload) and applies
// what can change while smxd runs: everything SMAR is built from (the
// smar section but its greylisting database, which stays open, and the
// map declarations, with every map file read again) and,
// per smtps section, relay_clients, protected_recipients and
// auth.trusted_mechs, which the policy checkers hold. Sessions in progress
// finish with the maps they started with; new sessions and resolutions
// use the new ones. Other changed options are reported as needing a
// restart, and the running configuration (smxctl config dump) keeps their
// old values. A configuration or map that does not load leaves everything
// as it was.
func (d *daemon) reload() (control.ReloadResult, error) {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	ml := d.logs.Logger("smxd")
	fail := func(err error) (control.ReloadResult, error) {
		ml.Line(maillog.LevelError).Func("smxd_reload").Str("error", err.Error()).Write()
		return control.ReloadResult{}, fmt.Errorf("reload: %w (nothing changed)", err)
	}
	old := d.config()
	var next *conf.Config
	var err error
	if old.File == "" {
		next, err = conf.Default()
	} else {
		next, err = conf.Load(old.File)
	}
	if err != nil {
		return fail(err)
	}
	merged := mergeReloadable(old, next)
	if err := d.checkPermissions(merged); err != nil {
		return fail(err)
	}
	st, err := buildSMAR(merged, d.greylist)
	if err != nil {
		return fail(err)
	}
	d.cfg.Store(merged)
	d.swapSMAR(st)
	res := control.ReloadResult{Reloaded: []string{"smar"}}
	for _, name := range st.smar.Maps.Names() {
		res.Reloaded = append(res.Reloaded, "map "+name)
	}
	res.NeedRestart = changedOptions(merged, next)
	ml.Line(maillog.LevelNotice).Func("smxd_reload").Str("reloaded", strings.Join(res.Reloaded, ";")).
		Str("need_restart", strings.Join(res.NeedRestart, ";")).Write()
	d.debug.Info("reloaded", "reloaded", res.Reloaded, "need_restart", res.NeedRestart)
	return res, nil
}

// mergeReloadable returns the running configuration old with the
// reloadable parts of next.
func mergeReloadable(old, next *conf.Config) *conf.Config {
	m := *old
	m.SMAR = next.SMAR
	// The greylisting database stays open as it was at start (Pebble
	// locks its directory): a change of its section waits for a restart.
	m.SMAR.Greylisting = old.SMAR.Greylisting
	m.Maps = next.Maps
	m.SMTPS = slices.Clone(old.SMTPS)
	for i := range m.SMTPS {
		for _, n := range next.SMTPS {
			if n.Name == m.SMTPS[i].Name {
				m.SMTPS[i].RelayClients = n.RelayClients
				m.SMTPS[i].ProtectedRecipients = n.ProtectedRecipients
				m.SMTPS[i].Auth.TrustedMechs = n.Auth.TrustedMechs
			}
		}
	}
	m.Warnings = next.Warnings
	return &m
}

// changedOptions lists the options whose values differ between two
// configurations, as "section.option" paths of their dumps.
func changedOptions(a, b *conf.Config) []string {
	fa, fb := flatten(a), flatten(b)
	var out []string
	for k, v := range fb {
		if fa[k] != v {
			out = append(out, k)
		}
	}
	for k := range fa {
		if _, ok := fb[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// flatten turns a configuration's dump into path -> value.
func flatten(c *conf.Config) map[string]string {
	var b strings.Builder
	conf.Dump(&b, c)
	out := map[string]string{}
	var path []string
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasSuffix(line, "{"):
			path = append(path, strings.TrimSpace(strings.TrimSuffix(line, "{")))
		case line == "}" || line == "};":
			if len(path) > 0 {
				path = path[:len(path)-1]
			}
		default:
			name, value, ok := strings.Cut(line, "=")
			if !ok {
				continue
			}
			key := strings.TrimSpace(name)
			if len(path) > 0 {
				key = strings.Join(path, ".") + "." + key
			}
			out[key] = strings.TrimSpace(value)
		}
	}
	return out
}

package conf

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
)

// Env is what Resolve needs from the machine.
type Env struct {
	// Hostname returns the machine's host name.
	Hostname func() (string, error)
	// Getwd returns the working directory.
	Getwd func() (string, error)
}

// OSEnv is the Env of this process.
func OSEnv() Env { return Env{Hostname: os.Hostname, Getwd: os.Getwd} }

// Pos returns where the option at path was set ("qmgr.aq_max_entries",
// "smtps MTA.tls.cert_file"; lower-case names) and whether it was.
func (c *Config) Pos(path string) (Pos, bool) {
	p, ok := c.set[strings.ToLower(path)]
	return p, ok
}

// Resolve fills in the values that depend on the machine and makes every
// path absolute, so that the result no longer depends on the working
// directory:
//
//   - hostname defaults to the machine's host name (the smtps hostname
//     and smtpc helo_name, and double_bounce_address, follow it);
//   - queue_directory is made absolute against the working directory;
//   - maps, TLS files and the auth file are relative to the directory of
//     the configuration file (the working directory for the embedded
//     default); the CDB, the event log, sockets, log files and the
//     greylisting databases are relative to the queue directory;
//   - the modules' log sections and log_level take the global ones for
//     what they do not set themselves, and a log's output is decided;
//   - maps declared at top level join those of smar.
//
// Resolve is idempotent.
func (c *Config) Resolve(env Env) error {
	if c.set == nil {
		c.set = map[string]Pos{}
	}
	wd, err := env.Getwd()
	if err != nil {
		return fmt.Errorf("conf: working directory: %w", err)
	}
	if c.Dir == "" {
		c.Dir = wd
	} else if !filepath.IsAbs(c.Dir) {
		c.Dir = filepath.Join(wd, c.Dir)
	}
	if c.Hostname == "" {
		if h, err := env.Hostname(); err == nil && h != "" {
			c.Hostname = h
		} else {
			c.Hostname = "localhost"
		}
	}
	if c.QueueDirectory == "" {
		c.QueueDirectory = DefaultQueueDirectory
	}
	if !filepath.IsAbs(c.QueueDirectory) {
		c.QueueDirectory = filepath.Join(wd, c.QueueDirectory)
	}
	c.QueueDirectory = filepath.Clean(c.QueueDirectory)
	if c.CDBBaseDirectory == "" {
		c.CDBBaseDirectory = "cdb"
	}

	// A declared map named by a name option replaces the default file.
	if c.SMAR.AccessMap.Name != "" {
		c.SMAR.AccessMap.File = ""
	}
	if c.SMAR.Aliases.Name != "" {
		c.SMAR.Aliases.File = ""
	}
	if c.SMAR.Mailertable.Name != "" {
		c.SMAR.Mailertable.File = ""
	}
	c.SMAR.Maps = append(c.SMAR.Maps, c.Maps...)
	c.Maps = []Map{}

	if c.QMGR.DoubleBounceAddress == "" {
		c.QMGR.DoubleBounceAddress = "postmaster@" + c.Hostname
	}
	if c.SMTPC.HELOName == "" {
		c.SMTPC.HELOName = c.Hostname
	}
	for i := range c.SMTPS {
		if c.SMTPS[i].Hostname == "" {
			c.SMTPS[i].Hostname = c.Hostname
		}
	}
	if len(c.SMAR.DNS.Nameservers) > 0 {
		if _, set := c.set["smar.dns.flags"]; !set {
			c.SMAR.DNS.Flags.UseResolvConf = false // seed 002: set unless nameservers are listed
		}
	}

	c.resolveLog(&c.Log, "")
	c.inheritLog(&c.QMGR.Log, &c.QMGR.LogLevel, "qmgr")
	c.inheritLog(&c.SMAR.Log, &c.SMAR.LogLevel, "smar")
	c.inheritLog(&c.SMTPC.Log, &c.SMTPC.LogLevel, "smtpc")
	for i := range c.SMTPS {
		key := "smtps"
		if c.SMTPS[i].Name != "" {
			key += " " + c.SMTPS[i].Name
		}
		c.inheritLog(&c.SMTPS[i].Log, &c.SMTPS[i].LogLevel, key)
	}

	resolvePaths(reflect.ValueOf(c).Elem(), c.Dir, c.QueueDirectory)
	return nil
}

// inheritLog gives a module's log section the global options it does not
// set itself (its ident stays its own), and the global log_level.
func (c *Config) inheritLog(l *Log, level *int, module string) {
	module = strings.ToLower(module)
	prefix := module + ".log."
	if _, ok := c.set[prefix+"facility"]; !ok {
		l.Facility = c.Log.Facility
	}
	if _, ok := c.set[prefix+"options"]; !ok {
		l.Options = append([]string{}, c.Log.Options...)
	}
	_, ownOutput := c.set[prefix+"output"]
	_, ownFile := c.set[prefix+"file"]
	_, ownFacility := c.set[prefix+"facility"]
	if !ownOutput && !ownFile && !ownFacility {
		l.Output = c.Log.Output
		l.File = c.Log.File
	}
	if _, ok := c.set[module+".log_level"]; !ok {
		*level = c.LogLevel
	}
	c.resolveLog(l, prefix)
}

// resolveLog decides where an undecided log goes: to its file if it has
// one, to syslog if a facility was configured, else to stderr.
func (c *Config) resolveLog(l *Log, prefix string) {
	if l.Output != "" {
		return
	}
	_, facility := c.set[prefix+"facility"]
	if prefix != "" {
		_, global := c.set["log.facility"]
		facility = facility || global
	} else {
		_, facility = c.set["log.facility"]
	}
	switch {
	case l.File != "":
		l.Output = "file"
	case facility:
		l.Output = "syslog"
	default:
		l.Output = "stderr"
	}
}

// resolvePaths makes every path-tagged string absolute.
func resolvePaths(v reflect.Value, confDir, queueDir string) {
	for _, f := range fieldsOf(v.Type()) {
		field := v.FieldByIndex(f.index)
		switch f.kind {
		case kindSection:
			resolvePaths(field, confDir, queueDir)
		case kindSections:
			for i := 0; i < field.Len(); i++ {
				resolvePaths(field.Index(i), confDir, queueDir)
			}
		case kindOption:
			if f.path == "" || field.Kind() != reflect.String || field.String() == "" {
				continue
			}
			p := field.String()
			if filepath.IsAbs(p) {
				field.SetString(filepath.Clean(p))
				continue
			}
			base := queueDir
			if f.path == "conf" {
				base = confDir
			}
			field.SetString(filepath.Join(base, p))
		}
	}
}

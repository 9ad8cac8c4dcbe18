package conf

import "time"

// Ignored marks an option that smx.conf accepts for compatibility with the
// seed's configurations but that has no effect in smx; the field's ignore
// tag says why, and Decode turns it into a warning.
type Ignored struct{}

// Alias marks another spelling of an option that lives elsewhere (its
// alias tag is the path of the real option, relative to the section).
type Alias struct{}

// Config is a whole smx.conf: the global section and one field per module
// section of the seed. Struct tags drive Decode and Dump:
//
//	conf:"name|other"  the option or section name (and accepted aliases)
//	conf:",name"       receives the name of a named section
//	unit:"s"           base unit of a time (s, us) or size (B, KB)
//	path:"conf"        a path resolved against the configuration directory
//	path:"queue"       a path resolved against the queue directory
//	enum:"a|b"         the values a string option accepts
//	kind:"flags"       a flags list decoded into the struct's bool fields
//	format:"hex"       dumped in hex
type Config struct {
	// Hostname is the name smx uses for itself (the seed's hostname); the
	// default is the machine's host name.
	Hostname string `conf:"hostname"`
	// QueueDirectory holds the queue, the event log, the CDB, the id
	// counter and the sockets unless their own options say otherwise
	// (the seed's MTAQDIR). Relative to the working directory.
	QueueDirectory string `conf:"queue_directory"`
	// CDBBaseDirectory is the base directory of the content store;
	// empty means "cdb" in the queue directory.
	CDBBaseDirectory string `conf:"CDB_base_directory" path:"queue"`
	// User and Group are the account smxd switches to after start-up
	// when started as root; empty means it keeps its own.
	User  string `conf:"user"`
	Group string `conf:"group"`

	SMARSocket  Ignored `conf:"SMAR_socket" ignore:"smxd runs SMAR inside its own process; there is no socket to it"`
	SMTPCSocket Ignored `conf:"SMTPC_socket" ignore:"smxd runs SMTPC inside its own process; there is no socket to it"`
	SMTPSSocket Ignored `conf:"SMTPS_socket" ignore:"smxd runs SMTPS inside its own process; there is no socket to it"`

	// Metrics is the metrics endpoint.
	Metrics Metrics `conf:"metrics"`
	// Log and LogLevel are the defaults of every module's log section and
	// log_level.
	Log      Log `conf:"log"`
	LogLevel int `conf:"log_level"`

	QMGR  QMGR    `conf:"qmgr"`
	SMAR  SMAR    `conf:"smar"`
	SMTPS []SMTPS `conf:"smtps"`
	SMTPC SMTPC   `conf:"smtpc"`
	// Maps declared at top level; Resolve moves them to SMAR.Maps, where
	// the seed declares them.
	Maps []Map `conf:"map"`

	// File is the configuration file's path ("" for the embedded default)
	// and Dir the directory that relative map and TLS paths start from.
	File string `conf:"-"`
	Dir  string `conf:"-"`
	// Warnings lists what Decode accepted but ignored.
	Warnings []Warning `conf:"-"`
	// set records where each option was set, by path (see Config.Pos).
	set map[string]Pos
}

// Metrics configures the metrics endpoint (an smx extension).
type Metrics struct {
	// ListenAddress is host:port to serve metrics on; empty turns them off,
	// and a port alone (":9100" or "9100") means the loopback address.
	ListenAddress string `conf:"listen_address"`
}

// Log is the seed's log section (Common Configuration Options), plus where
// the mail log goes.
type Log struct {
	// Facility is the syslog facility (daemon, mail, local0, ...).
	Facility string `conf:"facility"`
	// Ident is openlog(3)'s ident; it also starts each line of a log file.
	Ident string `conf:"ident"`
	// Options are openlog(3) options without LOG_: pid, ndelay, odelay,
	// cons, nowait, perror.
	Options []string `conf:"options"`
	// Output is stderr, syslog or file (an smx extension). Left empty, it
	// is file when File is set, syslog when facility is set, else stderr.
	Output string `conf:"output" enum:"stderr|syslog|file"`
	// File is the log file for output = file (relative to the queue
	// directory); smxd reopens it on SIGUSR2.
	File string `conf:"file" path:"queue"`
}

// The defaults of the global section.
const (
	// DefaultQueueDirectory is relative to the working directory so that
	// `make run` works without privileges; the installed example sets
	// /var/spool/smx.
	DefaultQueueDirectory = "./var/smx"
	// DefaultLogLevel is the seed's recommendation for normal operation.
	DefaultLogLevel = 9
)

func defaultLog(ident string) Log {
	return Log{Facility: "mail", Ident: ident, Options: []string{}}
}

// Defaults returns a Config with every option at its default and no smtps
// section. It has not been resolved.
func Defaults() *Config {
	return &Config{
		QueueDirectory: DefaultQueueDirectory,
		Log:            defaultLog("smx"),
		LogLevel:       DefaultLogLevel,
		QMGR:           defaultQMGR(),
		SMAR:           defaultSMAR(),
		SMTPC:          defaultSMTPC(),
		SMTPS:          []SMTPS{},
		Maps:           []Map{},
		set:            map[string]Pos{},
	}
}

// mcpOptions are the seed's per-module options for MCP (seed 001
// "Configuration for MCP" and "Advanced Configuration for MCP") and the
// thread and process counts of each module. smxd runs every module as a
// goroutine-based component of one process, so they have nothing to
// configure and are accepted with a warning.
type mcpOptions struct {
	StartAction         Ignored `conf:"start_action" ignore:"smxd starts every module itself, in one process"`
	PassFDSocket        Ignored `conf:"pass_fd_socket" ignore:"smxd binds its listeners itself; no descriptor is passed"`
	User                Ignored `conf:"user" ignore:"one process runs as one user: use the global user option"`
	Group               Ignored `conf:"group" ignore:"one process runs as one group: use the global group option"`
	RestartDependencies Ignored `conf:"restart_dependencies" ignore:"smxd supervises its components itself"`
	Path                Ignored `conf:"path" ignore:"there is no module program to execute: smxd runs every module in one process"`
	Arguments           Ignored `conf:"arguments" ignore:"there is no module program to execute: smxd runs every module in one process"`
	PassID              Ignored `conf:"pass_id" ignore:"there is one process, so there are no process ids to pass"`
	MinProcesses        Ignored `conf:"min_processes" ignore:"smxd runs every module in one process"`
	MaxProcesses        Ignored `conf:"max_processes" ignore:"smxd runs every module in one process"`
	Processes           Ignored `conf:"processes" ignore:"smxd runs every module in one process"`
	UseIDInLogfileName  Ignored `conf:"use_id_in_logfile_name" ignore:"there is one process, so one log file per section is enough"`
	WorkingDirectory    Ignored `conf:"working_directory" ignore:"smxd does not change directory per module; relative paths follow the queue directory"`
	MinThreads          Ignored `conf:"min_threads" ignore:"smxd uses goroutines, not a thread pool"`
	MaxThreads          Ignored `conf:"max_threads" ignore:"smxd uses goroutines, not a thread pool"`
	MinWaitThreads      Ignored `conf:"min_wait_threads" ignore:"smxd uses goroutines, not a thread pool"`
	MaxWaitThreads      Ignored `conf:"max_wait_threads" ignore:"smxd uses goroutines, not a thread pool"`
	MaxFDs              Ignored `conf:"max_fds" ignore:"modules do not connect to each other through descriptors in one process"`
	DebugLevel          Ignored `conf:"debug_level" ignore:"debug output is enabled with smxd run --debug"`
	ModuleTimeout       Ignored `conf:"module_timeout" ignore:"modules call each other directly in one process"`
}

// A few defaults shared by several sections.
const (
	day = 24 * time.Hour
)

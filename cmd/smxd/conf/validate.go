package conf

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/smx-mta/smx/log/maillog"
)

// Validate checks what involves more than one option, or the meaning of a
// value beyond its type: references between maps, listeners, address
// syntax, limits that must be ordered. Errors carry the position of the
// option concerned (or of its section) when the file set it.
func (c *Config) Validate() error {
	v := validator{c: c}
	v.log(&c.Log, "log", c.LogLevel, "log_level")
	v.log(&c.QMGR.Log, "qmgr.log", c.QMGR.LogLevel, "qmgr.log_level")
	v.log(&c.SMAR.Log, "smar.log", c.SMAR.LogLevel, "smar.log_level")
	v.log(&c.SMTPC.Log, "smtpc.log", c.SMTPC.LogLevel, "smtpc.log_level")
	v.qmgr()
	v.smar()
	ids := map[int]string{}
	for i := range c.SMTPS {
		v.smtps(&c.SMTPS[i], ids)
	}
	v.smtpc()
	if c.Metrics.ListenAddress != "" {
		if _, err := c.MetricsAddress(); err != nil {
			v.errorf("metrics.listen_address", "%v", err)
		}
	}
	if len(v.errs) > 0 {
		return v.errs
	}
	return nil
}

type validator struct {
	c    *Config
	errs Errors
}

// errorf reports an error at the option path (lower case), or at the
// closest enclosing section the file set, or without a position.
func (v *validator) errorf(path, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	key := strings.ToLower(path)
	for {
		if pos, ok := v.c.set[key]; ok {
			v.errs = append(v.errs, &Error{pos, path + ": " + msg})
			return
		}
		i := strings.LastIndexByte(key, '.')
		if i < 0 {
			break
		}
		key = key[:i]
	}
	file := v.c.File
	if file == "" {
		file = "default configuration"
	}
	v.errs = append(v.errs, &Error{Pos{File: file}, path + ": " + msg})
}

func (v *validator) log(l *Log, path string, level int, levelPath string) {
	inherited := l != &v.c.Log && l.Facility == v.c.Log.Facility // reported once, for the global log
	if _, err := maillog.ParseFacility(l.Facility); err != nil && !inherited {
		v.errorf(path+".facility", "unknown syslog facility %q (want daemon, mail, auth, local0 ... local7, ...)", l.Facility)
	}
	for _, o := range l.Options {
		if err := maillog.CheckSyslogOption(o); err != nil {
			v.errorf(path+".options", "unknown openlog option %q (want pid, ndelay, odelay, cons, nowait or perror)", o)
		}
	}
	if l.Output == "file" && l.File == "" {
		v.errorf(path+".output", "output = file needs file = PATH")
	}
	if level < 0 || level > 100 {
		v.errorf(levelPath, "log_level must be between 0 and 100, found %d", level)
	}
}

func (v *validator) qmgr() {
	q := &v.c.QMGR
	if q.AQMaxEntries <= 0 {
		v.errorf("qmgr.AQ_max_entries", "must be positive")
	}
	for _, s := range v.c.SMTPS {
		if q.AQMaxEntries <= s.MaxRecipientsPerTransaction {
			v.errorf("qmgr.AQ_max_entries", "must be larger than max_recipients_per_transaction of smtps %s (%d), or a transaction could never fit in AQ",
				s.Name, s.MaxRecipientsPerTransaction)
		}
	}
	if q.IQDB.MaxCacheEntries <= 0 {
		v.errorf("qmgr.IQDB.max_cache_entries", "must be positive")
	}
	if q.MinDiskSpace > 0 && q.OKDiskSpace <= q.MinDiskSpace {
		v.errorf("qmgr.ok_disk_space", "must be larger than min_disk_space (%s)", formatSize(q.MinDiskSpace))
	}
	if q.RetryMinDelay <= 0 || q.RetryMaxDelay < q.RetryMinDelay {
		v.errorf("qmgr.retry_max_delay", "need 0 < retry_min_delay (%s) <= retry_max_delay (%s)",
			formatDuration(q.RetryMinDelay), formatDuration(q.RetryMaxDelay))
	}
	if q.QueueReturnTimeout <= 0 {
		v.errorf("qmgr.queue_return_timeout", "must be positive")
	}
	if q.SMTPC.InitialConnections <= 0 || q.SMTPC.MaxConnections < q.SMTPC.InitialConnections {
		v.errorf("qmgr.smtpc.max_connections", "need 0 < initial_connections (%d) <= max_connections (%d)",
			q.SMTPC.InitialConnections, q.SMTPC.MaxConnections)
	}
	if q.SMTPC.SMTPMaxRcptsPerTransaction <= 0 || q.SMTPC.LMTPMaxRcptsPerTransaction <= 0 {
		v.errorf("qmgr.smtpc", "smtp_max_rcpts_per_transaction and lmtp_max_rcpts_per_transaction must be positive")
	}
	dns := v.c.SMAR.DNS
	if total := dns.Timeout * (1 + timeDur(dns.Retries)); q.SMARTimeout <= total {
		v.errorf("qmgr.SMAR_timeout", "must be larger than the total DNS timeout, (retries + 1) * timeout = %s", formatDuration(total))
	}
	if q.DSNHandling.MaxErrorsPerDSN <= 0 {
		v.errorf("qmgr.DSN_handling.max_errors_per_DSN", "must be positive")
	}
	if q.EventLog.SnapshotsKept < 1 {
		v.errorf("qmgr.event_log.snapshots_kept", "must be at least 1")
	}
	if q.DoubleBounceAddress != "" && !strings.Contains(q.DoubleBounceAddress, "@") {
		v.errorf("qmgr.double_bounce_address", "%q is not an address (want local@domain)", q.DoubleBounceAddress)
	}
}

func (v *validator) smar() {
	s := &v.c.SMAR
	maps := map[string]*Map{}
	// Maps declared at top level were moved into smar by Resolve; their
	// positions are recorded under "map NAME".
	mapPath := func(name string) string {
		if _, ok := v.c.set["smar.map "+strings.ToLower(name)]; ok {
			return "smar.map " + name
		}
		return "map " + name
	}
	for i := range s.Maps {
		m := &s.Maps[i]
		if _, dup := maps[m.Name]; dup {
			v.errorf(mapPath(m.Name), "map %s is declared twice", m.Name)
		}
		maps[m.Name] = m
	}
	for i := range s.Maps {
		m := &s.Maps[i]
		path := mapPath(m.Name)
		switch m.Type {
		case "":
			v.errorf(path, "map %s needs a type (hash, cdb, sequence, socket or passwd)", m.Name)
		case "hash", "cdb":
			if m.File == "" {
				v.errorf(path, "map %s of type %s needs file = PATH", m.Name, m.Type)
			}
		case "socket":
			if m.Path == "" && (m.Address == "" || m.Port == 0) {
				v.errorf(path, "socket map %s needs path (a unix socket) or address and port", m.Name)
			}
			if m.Port < 0 || m.Port > 65535 {
				v.errorf(path+".port", "port %d out of range", m.Port)
			}
			if m.MapName == "" {
				v.errorf(path, "socket map %s needs mapname", m.Name)
			}
		case "sequence":
			if len(m.Maps) == 0 {
				v.errorf(path, "sequence map %s needs maps = { ... }", m.Name)
			}
			for _, ref := range m.Maps {
				if _, ok := maps[ref]; !ok {
					v.errorf(path+".maps", "map %s is not declared", ref)
				} else if ref == m.Name {
					v.errorf(path+".maps", "sequence map %s contains itself", m.Name)
				}
			}
		}
	}
	ref := func(path, file, name string) {
		_, fileSet := v.c.set[strings.ToLower(path+".file")]
		_, nameSet := v.c.set[strings.ToLower(path+".name")]
		if fileSet && nameSet && file != "" && name != "" {
			v.errorf(path, "set file or name, not both")
		}
		if name != "" {
			if _, ok := maps[name]; !ok {
				v.errorf(path+".name", "map %s is not declared (declare it with map %s { type = ...; })", name, name)
			}
		}
	}
	ref("smar.access_map", s.AccessMap.File, s.AccessMap.Name)
	ref("smar.aliases", s.Aliases.File, s.Aliases.Name)
	ref("smar.mailertable", s.Mailertable.File, s.Mailertable.Name)
	ref("smar.local_user_map", "", s.LocalUserMap.Name)
	if s.AddressDelimiter == "" {
		v.errorf("smar.address_delimiter", "must not be empty")
	}
	if len(s.DNS.Nameservers) > 4 {
		v.errorf("smar.DNS.nameservers", "at most four nameservers, found %d", len(s.DNS.Nameservers))
	}
	for _, ns := range s.DNS.Nameservers {
		if _, err := netip.ParseAddr(ns); err == nil {
			continue
		}
		if _, err := netip.ParseAddrPort(ns); err != nil {
			v.errorf("smar.DNS.nameservers", "%q is not an IP address or IP:port", ns)
		}
	}
	if s.DNS.Timeout <= 0 || s.DNS.Retries < 0 {
		v.errorf("smar.DNS", "timeout must be positive and retries not negative")
	}
	for i, bl := range s.DNSBL {
		if bl.Domain == "" || bl.Tag == "" {
			v.errorf(fmt.Sprintf("smar.dnsbl#%d", i+1), "dnsbl needs both domain and tag")
		}
	}
}

func (v *validator) smtps(s *SMTPS, ids map[int]string) {
	path := "smtps"
	if s.Name != "" {
		path += " " + s.Name
	}
	v.log(&s.Log, path+".log", s.LogLevel, path+".log_level")
	if s.ID < 0 || s.ID > 255 {
		v.errorf(path+".id", "id must be between 0 and 255 (it is the process byte of the session ids), found %d", s.ID)
	} else if other, dup := ids[s.ID]; dup {
		v.errorf(path+".id", "id %d is also the id of smtps %s; each SMTP server needs its own", s.ID, other)
	} else {
		ids[s.ID] = s.Name
	}
	if _, err := s.Listeners(); err != nil {
		v.errorf(path, "%v", err)
	}
	if _, err := s.RelayNets(); err != nil {
		v.errorf(path+".relay_clients", "%v", err)
	}
	if (s.TLS.CertFile == "") != (s.TLS.KeyFile == "") {
		v.errorf(path+".tls", "cert_file and key_file go together")
	}
	if s.TLS.Flags.Implicit && s.TLS.CertFile == "" {
		v.errorf(path+".tls.flags", "implicit TLS needs cert_file and key_file")
	}
	if s.MaxMessageSize <= 0 || s.MaxLineLength < 512 || s.MaxHeaderSize <= 0 {
		v.errorf(path, "max_message_size and max_header_size must be positive and max_line_length at least 512 (RFC 5321)")
	}
	if s.MaxRecipientsPerTransaction <= 0 {
		v.errorf(path+".max_recipients_per_transaction", "must be positive")
	}
	if s.IOTimeout <= 0 {
		v.errorf(path+".io_timeout", "must be positive")
	}
	if s.ProtectedRecipients.AllowBy != (AllowByFlags{}) && !s.Flags.Access {
		v.errorf(path+".protected_recipients", "protected recipients are looked up in the access map: set the access flag")
	}
}

func (v *validator) smtpc() {
	s := &v.c.SMTPC
	if s.ConnectOnlyTo != "" {
		if _, err := netip.ParseAddr(s.ConnectOnlyTo); err != nil {
			v.errorf("smtpc.connect_only_to", "%q is not an IP address", s.ConnectOnlyTo)
		}
	}
	if s.RemotePort <= 0 || s.RemotePort > 65535 {
		v.errorf("smtpc.remote_port", "port %d out of range", s.RemotePort)
	}
	if (s.TLS.CertFile == "") != (s.TLS.KeyFile == "") {
		v.errorf("smtpc.tls", "cert_file and key_file go together")
	}
	if s.IOTimeout <= 0 {
		v.errorf("smtpc.io_timeout", "must be positive")
	}
}

// Listener is an address an SMTP server listens on.
type Listener struct {
	Network string // "tcp" or "unix"
	Address string // host:port, or a socket path
}

// String renders the listener as the logs name it: host:port, or
// unix:PATH.
func (l Listener) String() string {
	if l.Network == "unix" {
		return "unix:" + l.Address
	}
	return l.Address
}

// Listeners returns the addresses the server listens on: its
// listen_socket (when it has a port or a path) and its daemon_address
// entries (host:port, :port, or host with port 25).
func (s *SMTPS) Listeners() ([]Listener, error) {
	var out []Listener
	ls := s.ListenSocket
	switch {
	case ls.Type == "unix":
		if ls.Path == "" {
			return nil, fmt.Errorf("listen_socket of type unix needs path")
		}
		out = append(out, Listener{"unix", ls.Path})
	case ls.Port != 0:
		if ls.Port < 0 || ls.Port > 65535 {
			return nil, fmt.Errorf("listen_socket port %d out of range", ls.Port)
		}
		host := ls.Address
		if host != "" {
			if _, err := netip.ParseAddr(host); err != nil {
				return nil, fmt.Errorf("listen_socket address %q is not an IP address", host)
			}
		}
		out = append(out, Listener{"tcp", net.JoinHostPort(host, strconv.Itoa(ls.Port))})
	case ls.Address != "":
		return nil, fmt.Errorf("listen_socket needs a port")
	}
	for _, a := range s.DaemonAddress {
		host, port := a, strconv.Itoa(DefaultSMTPPort)
		if strings.HasPrefix(a, ":") || strings.Contains(a, "]:") || strings.Count(a, ":") == 1 {
			h, p, err := net.SplitHostPort(a)
			if err != nil {
				return nil, fmt.Errorf("daemon_address %q: %v", a, err)
			}
			host, port = h, p
		}
		host = strings.Trim(host, "[]")
		if host != "" {
			if _, err := netip.ParseAddr(host); err != nil {
				return nil, fmt.Errorf("daemon_address %q: %q is not an IP address", a, host)
			}
		}
		if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
			return nil, fmt.Errorf("daemon_address %q: bad port %q", a, port)
		}
		out = append(out, Listener{"tcp", net.JoinHostPort(host, port)})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("nothing to listen on: set listen_socket { address = ...; port = ...; } or daemon_address")
	}
	return out, nil
}

// RelayNets parses relay_clients: IP addresses, CIDR nets, and the word
// loopback (127.0.0.0/8 and ::1).
func (s *SMTPS) RelayNets() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, c := range s.RelayClients {
		switch {
		case strings.EqualFold(c, "loopback"):
			out = append(out, netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"))
		case strings.Contains(c, "/"):
			p, err := netip.ParsePrefix(c)
			if err != nil {
				return nil, fmt.Errorf("%q is not a network (want 192.0.2.0/24, 2001:db8::/32, an address or loopback)", c)
			}
			out = append(out, p.Masked())
		default:
			a, err := netip.ParseAddr(c)
			if err != nil {
				return nil, fmt.Errorf("%q is not an address (want 192.0.2.1, 192.0.2.0/24, 2001:db8::1 or loopback)", c)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out, nil
}

// MetricsAddress returns the metrics listen address with a port alone
// ("9100" or ":9100") bound to the loopback address; "" when off.
func (c *Config) MetricsAddress() (string, error) {
	a := c.Metrics.ListenAddress
	if a == "" {
		return "", nil
	}
	if _, err := strconv.Atoi(a); err == nil {
		a = ":" + a
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return "", fmt.Errorf("listen_address %q: want host:port or a port", c.Metrics.ListenAddress)
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return "", fmt.Errorf("listen_address %q: bad port", c.Metrics.ListenAddress)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

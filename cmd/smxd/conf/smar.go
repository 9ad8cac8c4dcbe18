package conf

import "time"

// SMAR is the smar section: the address resolver (seed 001/002
// "Configuration for SMAR" and "Advanced Configuration for SMAR").
type SMAR struct {
	mcpOptions
	Log      Log `conf:"log"`
	LogLevel int `conf:"log_level"`

	// Maps are the map declarations (map NAME { ... }).
	Maps []Map `conf:"map"`
	// AccessMap is the access map that SMTP servers with the access flag
	// consult.
	AccessMap MapRef `conf:"access_map"`
	// AddressDelimiter lists the characters that start an address
	// extension (user+detail); the first one found is used.
	AddressDelimiter string `conf:"address_delimiter"`
	// Aliases is the aliases map.
	Aliases Aliases `conf:"aliases"`
	// DNS configures the resolver.
	DNS DNS `conf:"DNS"`
	// Seed 001's spellings of DNS options.
	Nameserver Alias `conf:"nameserver" alias:"DNS.nameservers"`
	DNSTimeout Alias `conf:"DNS_timeout" alias:"DNS.timeout"`
	DNSFlags   Alias `conf:"DNS_flags" alias:"DNS.flags"`
	// DNSBL are the DNS blacklists (the section may be repeated).
	DNSBL []DNSBL `conf:"dnsbl"`
	// Greylisting configures greylisting (enabled by the smtps flag).
	Greylisting Greylisting `conf:"greylisting"`
	// LocalUserMap is the map of valid local addresses.
	LocalUserMap LocalUserMap `conf:"local_user_map"`
	// Mailertable routes domains to hosts and mailers.
	Mailertable Mailertable `conf:"mailertable"`
}

// Map declares a map (seed 001 "Declaring Maps for SMAR").
type Map struct {
	Name string `conf:",name"`
	// Type is hash, cdb, sequence, socket or passwd.
	Type string `conf:"type" enum:"hash|cdb|sequence|socket|passwd"`
	// File is the map file (hash, cdb).
	File string `conf:"file" path:"conf"`
	// MapName is the map's name in the socket map protocol.
	MapName string `conf:"mapname"`
	// Address and Port are an inet socket map's peer.
	Address string `conf:"address"`
	Port    int    `conf:"port"`
	// Path is a unix socket map's socket (relative to the queue directory).
	Path string `conf:"path" path:"queue"`
	// Maps are the maps of a sequence, in lookup order.
	Maps []string `conf:"maps"`
}

// MapRef names a map by file or by a declared map name; only one of them
// may be set.
type MapRef struct {
	File string `conf:"file" path:"conf"`
	Name string `conf:"name"`
}

// Aliases is smar's aliases section.
type Aliases struct {
	File  string       `conf:"file" path:"conf"`
	Name  string       `conf:"name"`
	Flags AliasesFlags `conf:"flags" kind:"flags"`
}

// AliasesFlags are the aliases flags.
type AliasesFlags struct {
	// LocalPart: keys are local parts, looked up for local domains only.
	LocalPart bool `conf:"localpart"`
	// LocalDomains: keys are full addresses, looked up for local domains.
	LocalDomains bool `conf:"local_domains"`
	// AllDomains: keys are full addresses, looked up for every domain.
	AllDomains bool `conf:"all_domains"`
	// ImplicitlyMatchDetail: user@host also matches user+detail@host.
	ImplicitlyMatchDetail bool `conf:"implicitly_match_detail"`
	// ReplaceMacros replaces ${user} and friends in right-hand sides.
	ReplaceMacros bool `conf:"replace_macros"`
	// PreserveDomain qualifies unqualified right-hand sides with the
	// original domain instead of the host name.
	PreserveDomain bool `conf:"preserve_domain"`
}

// DNS is smar's DNS section.
type DNS struct {
	// Nameservers are up to four nameserver addresses (host or host:port);
	// empty means those of /etc/resolv.conf.
	Nameservers []string `conf:"nameservers"`
	// Retries is the number of retries after the first query.
	Retries int `conf:"retries"`
	// Timeout bounds one query.
	Timeout time.Duration `conf:"timeout" unit:"s"`
	Flags   DNSFlags      `conf:"flags" kind:"flags"`
}

// DNSFlags are the DNS flags.
type DNSFlags struct {
	// UseResolvConf reads the nameservers from /etc/resolv.conf; it is
	// turned off when nameservers are listed.
	UseResolvConf bool `conf:"use_resolvconf"`
	// UseTCP queries over TCP instead of UDP.
	UseTCP bool `conf:"use_TCP"`
	// UseConnect connects UDP sockets; Go's resolver always does, so it
	// changes nothing.
	UseConnect bool `conf:"use_connect"`
}

// DNSBL is one DNS blacklist.
type DNSBL struct {
	// Domain is the blacklist's zone, e.g. dnsbl.example.
	Domain string `conf:"domain"`
	// Tag prefixes the access map lookups of its answers (tag:127.0.0.2).
	Tag string `conf:"tag"`
}

// Greylisting is smar's greylisting section.
type Greylisting struct {
	// GreyWait is how long a client must wait before retrying.
	GreyWait time.Duration `conf:"grey_wait" unit:"s"`
	// GreyExpire drops greylisted entries that did not retry in time.
	GreyExpire time.Duration `conf:"grey_expire" unit:"s"`
	// WhiteExpire drops whitelisted entries unused for this long.
	WhiteExpire time.Duration `conf:"white_expire" unit:"s"`
	// WhiteTimeout makes whitelisted entries confirm again after this long.
	WhiteTimeout time.Duration `conf:"white_timeout" unit:"s"`
	// MainDBName is the greylisting database, a Pebble directory
	// (relative to the queue directory), which holds the seed's
	// secondary index by expiry time too.
	MainDBName      string  `conf:"main_DB_name" path:"queue"`
	SecondaryDBName Ignored `conf:"secondary_DB_name" ignore:"the index by expiry time is kept in the main_DB_name database"`
	// ExpireLimit is the entry count above which expired entries are
	// removed.
	ExpireLimit int `conf:"expire_limit"`
	// Netmask is applied to client IPv4 addresses before they are used as
	// keys (0xFFFFFF00 treats a /24 as one client).
	Netmask uint32 `conf:"netmask" format:"hex"`
}

// LocalUserMap is smar's local_user_map section.
type LocalUserMap struct {
	Name  string            `conf:"name"`
	Flags LocalUserMapFlags `conf:"flags" kind:"flags"`
}

// LocalUserMapFlags are local_user_map's flags.
type LocalUserMapFlags struct {
	ImplicitlyMatchDetail bool `conf:"implicitly_match_detail"`
}

// Mailertable is smar's mailertable section.
type Mailertable struct {
	File  string      `conf:"file" path:"conf"`
	Name  string      `conf:"name"`
	Flags LookupFlags `conf:"flags" kind:"flags"`
}

func defaultSMAR() SMAR {
	return SMAR{
		Log:              defaultLog("smx-smar"),
		LogLevel:         DefaultLogLevel,
		Maps:             []Map{},
		AccessMap:        MapRef{File: "access.db"}, // seed 001
		AddressDelimiter: "+",                       // seed 001
		Aliases: Aliases{
			File:  "aliases.db", // seed 001
			Flags: AliasesFlags{LocalPart: true},
		},
		DNS: DNS{
			Nameservers: []string{},
			Retries:     2,
			Timeout:     5 * time.Second,
			Flags:       DNSFlags{UseResolvConf: true}, // seed 002
		},
		DNSBL: []DNSBL{},
		Greylisting: Greylisting{
			GreyWait:     5 * time.Minute,
			GreyExpire:   2 * day,
			WhiteExpire:  36 * day,
			WhiteTimeout: 90 * day,
			MainDBName:   "greylist",
			ExpireLimit:  100000,
			Netmask:      0xFFFFFFFF,
		},
		Mailertable: Mailertable{
			File:  "mt",                                                     // seed 001
			Flags: LookupFlags{Domain: true, DotSubdomain: true, Dot: true}, // seed 002
		},
	}
}

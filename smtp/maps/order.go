package maps

import (
	"context"
	"net/netip"
	"strconv"
	"strings"
)

// Flags select the steps of the seed's lookup order (seed 002, section
// 3.12.1); the names follow the mailertable flags of seed 002.
type Flags uint16

// The lookup steps.
const (
	// FullAddress looks up "user+detail@sub" (verbatim) and "user@sub".
	FullAddress Flags = 1 << iota
	// DetailPlus looks up "user++@sub": any non-empty detail.
	DetailPlus
	// DetailStar looks up "user+*@sub": any detail, even an empty one.
	DetailStar
	// Star looks up "user*@sub": the user with or without a detail.
	Star
	// DomainPart looks up "@sub" (or "sub" for NoAt orders).
	DomainPart
	// DotSubdomain iterates through the parent domains ".sub1.tld",
	// ".tld" after "sub2.sub1.tld".
	DotSubdomain
	// Dot looks up "." (or "@.") last: the default entry.
	Dot
	// LocalPart tries the local-part-only keys when nothing matched:
	// "user+detail", "user++", "user+*", "user*", "user".
	LocalPart
	// ImplicitDetail makes "user@sub" and "user" match an address with a
	// detail (the seed's implicitly_match_detail).
	ImplicitDetail
)

// Common orders.
const (
	// GenericAddress is the full address order of seed 001, section
	// 3.12.1, case 1, used for from:, to: and protectedrcpt: entries and
	// fully qualified aliases.
	GenericAddress = FullAddress | DetailPlus | DetailStar | Star | DomainPart | DotSubdomain
	// LocalParts is case 2 alone: for maps keyed by local part (aliases
	// with the localpart flag, local_user_map).
	LocalParts = LocalPart
	// MailertableDefault is the mailertable's default: domain,
	// dotsubdomain, dot.
	MailertableDefault = DomainPart | DotSubdomain | Dot
)

// DefaultDelimiters is the default address_delimiter.
const DefaultDelimiters = "+"

// Order is a lookup order: which steps, which address delimiters, and how
// domain keys are written.
type Order struct {
	Flags Flags
	// Delimiters is address_delimiter: every character is a possible
	// delimiter, and the first one found in the local part splits it into
	// user and detail (seed 002, section 3.9.2). Empty means "+".
	Delimiters string
	// NoAt writes the domain step as "sub" instead of "@sub", as the
	// mailertable does.
	NoAt bool
	// Tag is put in front of every key, for example "to:" for the access
	// map. Building it in saves a concatenation per key.
	Tag string
}

// SplitDetail splits local into user, delimiter and detail using the first
// character of local that is in delimiters ("" means "+"). ok is false when
// the local part has no delimiter.
func SplitDetail(local, delimiters string) (user string, delim byte, detail string, ok bool) {
	if delimiters == "" {
		delimiters = DefaultDelimiters
	}
	i := strings.IndexAny(local, delimiters)
	if i < 0 {
		return local, 0, "", false
	}
	return local[:i], local[i], local[i+1:], true
}

// Key is one key of a lookup order, with what macros need to know about it.
type Key struct {
	Key string
	// Subdomain is the part of the domain that a leading-dot pattern
	// matched in place of the dot ("host" when "@.domain" is tried for
	// host.domain); empty otherwise.
	Subdomain string
}

// DomainKeys returns the keys for a domain: "sub2.sub1.tld", then with
// subdomains ".sub1.tld", ".tld", then with dot ".". The domain is folded
// to lower case; a trailing dot is kept as given.
func DomainKeys(domain string, subdomains, dot bool) []string {
	keys := domainSteps(Fold(domain), subdomains, dot)
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.Key
	}
	return out
}

func domainSteps(domain string, subdomains, dot bool) []Key {
	keys := []Key{{Key: domain}}
	if subdomains && !strings.HasPrefix(domain, "[") {
		for i := 0; i < len(domain); i++ {
			if domain[i] == '.' && i+1 < len(domain) {
				keys = append(keys, Key{Key: domain[i:], Subdomain: domain[:i]})
			}
		}
	}
	if dot && domain != "." {
		keys = append(keys, Key{Key: ".", Subdomain: strings.TrimSuffix(domain, ".")})
	}
	return keys
}

// IPKeys returns the keys for an IP address. For IPv4 "A.B.C.D" they are
// "A.B.C.D", "A.B.C", "A.B", "A" (seed 001, section 3.12.1). IPv6 is done
// likewise by 16-bit groups: the address in its RFC 5952 form
// ("2001:db8::1"), then the eight groups written out without leading
// zeros ("2001:db8:0:0:0:0:0:1") and shortened a group at a time down to
// "2001". An IPv4-mapped IPv6 address is looked up as IPv4.
func IPKeys(ip netip.Addr) []string {
	ip = ip.Unmap()
	if !ip.IsValid() {
		return nil
	}
	if ip.Is4() {
		b := ip.As4()
		keys := make([]string, 0, 4)
		for n := 4; n >= 1; n-- {
			var sb strings.Builder
			for i := 0; i < n; i++ {
				if i > 0 {
					sb.WriteByte('.')
				}
				sb.WriteString(strconv.Itoa(int(b[i])))
			}
			keys = append(keys, sb.String())
		}
		return keys
	}
	b := ip.WithZone("").As16()
	groups := make([]string, 8)
	for i := range groups {
		groups[i] = strconv.FormatUint(uint64(b[2*i])<<8|uint64(b[2*i+1]), 16)
	}
	keys := make([]string, 0, 9)
	if short := ip.WithZone("").String(); short != strings.Join(groups, ":") {
		keys = append(keys, short)
	}
	for n := 8; n >= 1; n-- {
		keys = append(keys, strings.Join(groups[:n], ":"))
	}
	return keys
}

// AddressKeys returns the keys of the seed's address lookup order for a,
// in order (seed 002, section 3.12.1):
//
//  1. for each domain step (the domain, its parents with DotSubdomain, "."
//     with Dot): "user+detail@sub" (FullAddress, if there is a detail),
//     "user++@sub" (DetailPlus, if the detail is not empty), "user+*@sub"
//     (DetailStar, if there is a detail), "user*@sub" (Star), "user@sub"
//     (FullAddress; with a detail only if ImplicitDetail), "@sub"
//     (DomainPart);
//  2. with LocalPart: "user+detail", "user++", "user+*", "user*", "user"
//     under the same conditions.
//
// "+" stands for the delimiter found in the address; the second "+" of
// "++" and the "*" are fixed metacharacters. Keys are in lower case.
func (o Order) AddressKeys(a Address) []Key {
	if a.Local == "" {
		// The null address <> has no keys: "" would look up nothing.
		return nil
	}
	local := Fold(a.Local)
	user, delim, detail, hasDetail := SplitDetail(local, o.Delimiters)
	var d string
	if hasDetail {
		d = string(delim)
	}
	keys := make([]Key, 0, 6*(strings.Count(a.Domain, ".")+2)+5)
	tag := o.Tag
	locals := func(suffix string, sub string) {
		if hasDetail && o.Flags&FullAddress != 0 {
			keys = append(keys, Key{Key: tag + local + suffix, Subdomain: sub})
		}
		if hasDetail && detail != "" && o.Flags&DetailPlus != 0 {
			keys = append(keys, Key{Key: tag + user + d + "+" + suffix, Subdomain: sub})
		}
		if hasDetail && o.Flags&DetailStar != 0 {
			keys = append(keys, Key{Key: tag + user + d + "*" + suffix, Subdomain: sub})
		}
		if o.Flags&Star != 0 {
			keys = append(keys, Key{Key: tag + user + "*" + suffix, Subdomain: sub})
		}
		if (!hasDetail || o.Flags&ImplicitDetail != 0) && o.Flags&FullAddress != 0 {
			keys = append(keys, Key{Key: tag + user + suffix, Subdomain: sub})
		}
	}
	if a.Domain != "" {
		at := "@"
		if o.NoAt {
			at = ""
		}
		for _, step := range domainSteps(Fold(a.Domain), o.Flags&DotSubdomain != 0, o.Flags&Dot != 0) {
			locals("@"+step.Key, step.Subdomain)
			if o.Flags&DomainPart != 0 {
				keys = append(keys, Key{Key: tag + at + step.Key, Subdomain: step.Subdomain})
			}
		}
	}
	if o.Flags&LocalPart != 0 {
		saved := o.Flags
		o.Flags |= FullAddress | DetailPlus | DetailStar | Star
		locals("", "")
		o.Flags = saved
	}
	return keys
}

// Step is one key tried by Find, for traces such as smxctl map test.
type Step struct {
	Key   string
	Value string
	Found bool
	Err   error
}

// Trace receives each key Find tries, in order; it may be nil.
type Trace func(Step)

// Match is the entry Find found.
type Match struct {
	Key   Key // the key without the tag
	Value string
}

// Find looks up tag+key for each key in order (tag "" costs no
// concatenation) and returns the first entry
// found. A lookup error stops the search: the caller cannot know whether a
// later, less specific key should apply. m should be a View so that all keys
// see the same version of a reloaded map.
func Find(ctx context.Context, m Map, tag string, keys []Key, trace Trace) (Match, bool, error) {
	for _, k := range keys {
		key := k.Key
		if tag != "" {
			key = tag + key
		}
		v, found, err := m.Lookup(ctx, key)
		if trace != nil {
			trace(Step{Key: key, Value: v, Found: found, Err: err})
		}
		if err != nil {
			return Match{}, false, err
		}
		if found {
			return Match{Key: k, Value: v}, true, nil
		}
	}
	return Match{}, false, nil
}

// Keys wraps plain strings as Keys, for Find.
func Keys(ss ...string) []Key {
	out := make([]Key, len(ss))
	for i, s := range ss {
		out[i] = Key{Key: s}
	}
	return out
}

// Package maps owns the SMAR maps and their lookup orders: the map types of
// the seed (hash, passwd, sequence, socket), the text file format of hash
// maps, atomic reloading, the RFC 5321 address splitter used to build keys,
// and the seed's lookup orders for domains, IPv4 and IPv6 nets and addresses
// with +detail (address_delimiter, implicitly_match_detail).
//
// It knows nothing of what a map means: the access map, mailertable, aliases
// and local users are interpreted by packages policy and resolver. It never
// reads smx.conf; the daemon hands it Specs built from the map sections.
//
// Keys are compared in lower case (seed 002, "Restrictions": map lookups
// convert keys to lower case), so local parts that depend on upper case
// cannot be matched.
package maps

package conf

import (
	"reflect"
	"strings"
	"time"
)

// fieldKind says how a struct field appears in smx.conf.
type fieldKind int

const (
	kindOption   fieldKind = iota // name = value;
	kindFlags                     // name = { flag, -flag };
	kindSection                   // name { ... }
	kindSections                  // name [NAME] { ... }, repeatable
	kindIgnored                   // accepted with a warning
	kindAlias                     // another spelling of an option elsewhere
	kindName                      // receives the section's name
)

// fieldInfo describes one struct field from its tags.
type fieldInfo struct {
	names  []string // canonical spelling first, then accepted aliases
	index  []int
	kind   fieldKind
	typ    reflect.Type
	unit   string
	path   string
	enum   []string
	format string
	ignore string
	alias  string
	split  bool // split list items on white space
}

func (f *fieldInfo) name() string { return f.names[0] }

func (f *fieldInfo) matches(name string) bool {
	for _, n := range f.names {
		if strings.EqualFold(n, name) {
			return true
		}
	}
	return false
}

var (
	typeDuration = reflect.TypeOf(time.Duration(0))
	typeSize     = reflect.TypeOf(Size(0))
	typeIgnored  = reflect.TypeOf(Ignored{})
	typeAlias    = reflect.TypeOf(Alias{})
)

// fieldsOf lists the smx.conf fields of struct type t in declaration
// order, flattening embedded structs.
func fieldsOf(t reflect.Type) []fieldInfo {
	var out []fieldInfo
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if sf.Anonymous && sf.Type.Kind() == reflect.Struct {
			for _, inner := range fieldsOf(sf.Type) {
				inner.index = append([]int{i}, inner.index...)
				out = append(out, inner)
			}
			continue
		}
		tag, ok := sf.Tag.Lookup("conf")
		if !ok || tag == "-" {
			continue
		}
		f := fieldInfo{index: []int{i}, typ: sf.Type, unit: sf.Tag.Get("unit"), path: sf.Tag.Get("path"),
			format: sf.Tag.Get("format"), ignore: sf.Tag.Get("ignore"), alias: sf.Tag.Get("alias"),
			split: sf.Tag.Get("split") == "space"}
		if e := sf.Tag.Get("enum"); e != "" {
			f.enum = strings.Split(e, "|")
		}
		switch {
		case tag == ",name":
			f.kind = kindName
			f.names = []string{""}
		case sf.Type == typeIgnored:
			f.kind = kindIgnored
		case sf.Type == typeAlias:
			f.kind = kindAlias
		case sf.Tag.Get("kind") == "flags":
			f.kind = kindFlags
		case sf.Type.Kind() == reflect.Struct && sf.Type != typeDuration:
			f.kind = kindSection
		case sf.Type.Kind() == reflect.Slice && sf.Type.Elem().Kind() == reflect.Struct:
			f.kind = kindSections
		default:
			f.kind = kindOption
		}
		if f.kind != kindName {
			f.names = strings.Split(tag, "|")
		}
		out = append(out, f)
	}
	return out
}

// lookupField finds the field called name (case-insensitive).
func lookupField(fields []fieldInfo, name string) *fieldInfo {
	for i := range fields {
		if fields[i].kind != kindName && fields[i].matches(name) {
			return &fields[i]
		}
	}
	return nil
}

// suggest returns the candidate closest to name, if it is close enough to
// be what was meant.
func suggest(name string, candidates []string) string {
	best, bestDist := "", 1<<30
	lname := strings.ToLower(name)
	for _, c := range candidates {
		d := editDistance(lname, strings.ToLower(c))
		if d < bestDist {
			best, bestDist = c, d
		}
	}
	if bestDist > 2 && len(name) >= 4 {
		// A prefix is also a good guess: queue_dir for queue_directory.
		for _, c := range candidates {
			if strings.HasPrefix(strings.ToLower(c), lname) {
				return c
			}
		}
	}
	limit := len(name) / 3
	if limit < 2 {
		limit = 2
	}
	if bestDist <= limit {
		return best
	}
	return ""
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

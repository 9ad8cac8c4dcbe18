package conf

import (
	"fmt"
	"math"
	"reflect"
	"strings"
	"time"
)

// newElement returns the defaults of a new element of a repeatable section.
func newElement(t reflect.Type, name string, position int) reflect.Value {
	switch t {
	case reflect.TypeOf(SMTPS{}):
		return reflect.ValueOf(defaultSMTPS(name, position))
	case reflect.TypeOf(Map{}):
		return reflect.ValueOf(Map{Name: name, Maps: []string{}})
	}
	v := reflect.New(t).Elem()
	for _, f := range fieldsOf(t) {
		if f.kind == kindName {
			v.FieldByIndex(f.index).SetString(name)
		}
	}
	return v
}

// sectionNames says whether the elements of a repeatable section need a
// name ("required"), may have one ("optional") or have none ("none").
func sectionNames(t reflect.Type) string {
	switch t {
	case reflect.TypeOf(Map{}):
		return "required"
	case reflect.TypeOf(SMTPS{}):
		return "optional"
	}
	return "none"
}

type decoder struct {
	errs     Errors
	warnings []Warning
	set      map[string]Pos
}

// maxErrors stops decoding a hopeless file early.
const maxErrors = 20

func (d *decoder) errorf(pos Pos, format string, args ...any) {
	if len(d.errs) < maxErrors {
		d.errs = append(d.errs, &Error{pos, fmt.Sprintf(format, args...)})
	}
}

func (d *decoder) warnf(pos Pos, format string, args ...any) {
	d.warnings = append(d.warnings, Warning{pos, fmt.Sprintf(format, args...)})
}

// Decode turns a parsed file into a Config: defaults first, then every
// entry of the file in order (a later setting replaces an earlier one).
// The result is not yet resolved or validated.
func Decode(root *Section) (*Config, error) {
	c := Defaults()
	d := &decoder{set: c.set}
	d.section(root, reflect.ValueOf(c).Elem(), "")
	c.Warnings = d.warnings
	if len(d.errs) > 0 {
		return nil, d.errs
	}
	return c, nil
}

func where(path string) string {
	if path == "" {
		return "the global section"
	}
	return "section " + path
}

func join(path, name string) string {
	if path == "" {
		return strings.ToLower(name)
	}
	return path + "." + strings.ToLower(name)
}

func candidates(fields []fieldInfo) []string {
	var out []string
	for _, f := range fields {
		if f.kind != kindName {
			out = append(out, f.names...)
		}
	}
	return out
}

// section decodes the entries of s into the struct v; path names v for
// messages and for Config.set ("qmgr.smtpc", "smtps MTA.tls").
func (d *decoder) section(s *Section, v reflect.Value, path string) {
	fields := fieldsOf(v.Type())
	for _, e := range s.Entries {
		if len(d.errs) >= maxErrors {
			return
		}
		switch e := e.(type) {
		case *Option:
			d.option(e, v, fields, path)
		case *Section:
			d.subsection(e, v, fields, path)
		}
	}
}

func (d *decoder) unknown(what, name string, pos Pos, fields []fieldInfo, path string) {
	msg := fmt.Sprintf("unknown %s %q in %s", what, name, where(path))
	if s := suggest(name, candidates(fields)); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	d.errorf(pos, "%s", msg)
}

func (d *decoder) option(o *Option, v reflect.Value, fields []fieldInfo, path string) {
	f := lookupField(fields, o.Name)
	if f == nil {
		d.unknown("option", o.Name, o.Pos, fields, path)
		return
	}
	switch f.kind {
	case kindIgnored:
		d.warnf(o.Pos, "option %s ignored: %s", f.name(), f.ignore)
	case kindAlias:
		d.alias(o, f, v, path)
	case kindSection, kindSections:
		d.errorf(o.Pos, "%s is a section, not an option: write %s { ... }", f.name(), f.name())
	case kindFlags:
		d.noteSet(join(path, f.name()), o.Pos)
		d.flags(o, v.FieldByIndex(f.index), f)
	case kindOption:
		d.noteSet(join(path, f.name()), o.Pos)
		d.value(o, v.FieldByIndex(f.index), f)
	}
}

func (d *decoder) noteSet(key string, pos Pos) {
	if prev, ok := d.set[key]; ok && prev.File == pos.File {
		d.warnf(pos, "%s is set again; this value replaces the one at line %d", key, prev.Line)
	}
	d.set[key] = pos
}

// alias decodes o into the option its alias tag names.
func (d *decoder) alias(o *Option, f *fieldInfo, v reflect.Value, path string) {
	parts := strings.Split(f.alias, ".")
	for i, part := range parts {
		fields := fieldsOf(v.Type())
		target := lookupField(fields, part)
		if target == nil {
			panic("conf: bad alias tag " + f.alias)
		}
		if i < len(parts)-1 {
			v = v.FieldByIndex(target.index)
			path = join(path, target.name())
			continue
		}
		renamed := *o
		renamed.Name = target.name()
		d.option(&renamed, v, []fieldInfo{*target}, path)
	}
}

func (d *decoder) subsection(s *Section, v reflect.Value, fields []fieldInfo, path string) {
	f := lookupField(fields, s.Keyword)
	if f == nil {
		d.unknown("section", s.Keyword, s.Pos, fields, path)
		return
	}
	switch f.kind {
	case kindIgnored:
		d.warnf(s.Pos, "section %s ignored: %s", f.name(), f.ignore)
	case kindSection:
		if s.Name != "" {
			d.errorf(s.NamePos, "section %s takes no name, found %q", f.name(), s.Name)
			return
		}
		key := join(path, f.name())
		if _, ok := d.set[key]; !ok {
			d.set[key] = s.Pos
		}
		d.section(s, v.FieldByIndex(f.index), key)
	case kindSections:
		d.repeated(s, v.FieldByIndex(f.index), f, path)
	default:
		d.errorf(s.Pos, "%s is an option, not a section: write %s = value;", f.name(), f.name())
	}
}

func (d *decoder) repeated(s *Section, slice reflect.Value, f *fieldInfo, path string) {
	elemType := slice.Type().Elem()
	switch names := sectionNames(elemType); {
	case names == "required" && s.Name == "":
		d.errorf(s.Pos, "section %s needs a name: %s NAME { ... }", f.name(), f.name())
		return
	case names == "none" && s.Name != "":
		d.errorf(s.NamePos, "section %s takes no name, found %q", f.name(), s.Name)
		return
	}
	key := join(path, f.name())
	switch {
	case s.Name != "":
		key += " " + strings.ToLower(s.Name)
	case sectionNames(elemType) == "none":
		key += fmt.Sprintf("#%d", slice.Len()+1) // dnsbl#1, dnsbl#2
	}
	if sectionNames(elemType) != "none" {
		for i := 0; i < slice.Len(); i++ {
			if nameOf(slice.Index(i)) == s.Name {
				what := f.name() + " " + s.Name
				if s.Name == "" {
					what = "an unnamed " + f.name() + " section"
				}
				d.errorf(s.Pos, "%s is declared twice (first at %s); give each a unique name", what, d.set[key])
				return
			}
		}
	}
	d.set[key] = s.Pos
	elem := reflect.New(elemType).Elem()
	elem.Set(newElement(elemType, s.Name, slice.Len()))
	d.section(s, elem, key)
	slice.Set(reflect.Append(slice, elem))
}

// nameOf returns the name field of a repeatable section element.
func nameOf(v reflect.Value) string {
	for _, f := range fieldsOf(v.Type()) {
		if f.kind == kindName {
			return v.FieldByIndex(f.index).String()
		}
	}
	return ""
}

func (d *decoder) scalar(o *Option) (Item, bool) {
	if o.Value.List {
		if len(o.Value.Items) == 1 {
			return o.Value.Items[0], true
		}
		d.errorf(o.Value.Pos, "%s takes a single value, found a list of %d", o.Name, len(o.Value.Items))
		return Item{}, false
	}
	return o.Value.Items[0], true
}

// value decodes a scalar or list option into field.
func (d *decoder) value(o *Option, field reflect.Value, f *fieldInfo) {
	if field.Kind() == reflect.Slice {
		list := make([]string, 0, len(o.Value.Items))
		for _, it := range o.Value.Items {
			if f.split {
				list = append(list, strings.Fields(it.Text)...)
			} else {
				list = append(list, it.Text)
			}
		}
		field.Set(reflect.ValueOf(list))
		return
	}
	it, ok := d.scalar(o)
	if !ok {
		return
	}
	fail := func(err error) { d.errorf(it.Pos, "%s: %v", f.name(), err) }
	switch {
	case field.Type() == typeDuration:
		base := time.Second
		if f.unit == "us" {
			base = time.Microsecond
		}
		v, err := parseDuration(it.Text, base)
		if err != nil {
			fail(err)
			return
		}
		field.SetInt(int64(v))
	case field.Type() == typeSize:
		base := int64(1)
		if f.unit == "KB" {
			base = 1 << 10
		}
		v, err := parseSize(it.Text, base)
		if err != nil {
			fail(err)
			return
		}
		field.SetInt(int64(v))
	case field.Kind() == reflect.String:
		text := it.Text
		if f.enum != nil {
			text = ""
			for _, e := range f.enum {
				if strings.EqualFold(e, it.Text) {
					text = e
				}
			}
			if text == "" {
				fail(fmt.Errorf("expected one of %s, found %q", strings.Join(f.enum, ", "), it.Text))
				return
			}
		}
		field.SetString(text)
	case field.Kind() == reflect.Bool:
		v, err := parseBool(it.Text)
		if err != nil {
			fail(err)
			return
		}
		field.SetBool(v)
	case field.Kind() == reflect.Int:
		v, err := parseNumber(it.Text)
		if err != nil {
			fail(err)
			return
		}
		if v > math.MaxInt32 {
			fail(fmt.Errorf("number %q is too large (at most %d)", it.Text, math.MaxInt32))
			return
		}
		field.SetInt(v)
	case field.Kind() == reflect.Uint32:
		v, err := parseNumber(it.Text)
		if err != nil {
			fail(err)
			return
		}
		if v > math.MaxUint32 {
			fail(fmt.Errorf("number %q is too large (at most 0xFFFFFFFF)", it.Text))
			return
		}
		field.SetUint(uint64(v))
	default:
		panic(fmt.Sprintf("conf: no decoder for %s (%s)", f.name(), field.Type()))
	}
}

// negationPrefixes turn a flag off (seed 002 §8.1.1).
var negationPrefixes = []string{"not_", "dont_", "no_", "-", "!", "~"}

// flags applies a flags list to the bool fields of the struct field: each
// named flag is turned on, each negated one off; the others keep their
// defaults.
func (d *decoder) flags(o *Option, field reflect.Value, f *fieldInfo) {
	flagFields := fieldsOf(field.Type())
	for _, it := range o.Value.Items {
		name, on := it.Text, true
		target := lookupField(flagFields, name)
		if target == nil {
			for _, p := range negationPrefixes {
				if len(name) > len(p) && strings.EqualFold(name[:len(p)], p) {
					if t := lookupField(flagFields, name[len(p):]); t != nil {
						target, on = t, false
						break
					}
				}
			}
		}
		if target == nil || target.kind == kindName {
			var names []string
			for _, ff := range flagFields {
				if ff.kind == kindOption {
					names = append(names, ff.name())
				}
			}
			msg := fmt.Sprintf("unknown flag %q in %s", it.Text, f.name())
			stripped := name
			for _, p := range negationPrefixes {
				if len(stripped) > len(p) && strings.EqualFold(stripped[:len(p)], p) {
					stripped = stripped[len(p):]
					break
				}
			}
			if s := suggest(stripped, names); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			} else {
				msg += " (known: " + strings.Join(names, ", ") + ")"
			}
			d.errorf(it.Pos, "%s", msg)
			continue
		}
		if target.kind == kindIgnored {
			d.warnf(it.Pos, "flag %s ignored: %s", target.name(), target.ignore)
			continue
		}
		field.FieldByIndex(target.index).SetBool(on)
	}
}

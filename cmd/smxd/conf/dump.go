package conf

import (
	"bufio"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Dump writes c in smx.conf syntax: every option of every section with its
// value, defaults included (the seed's -VVVVV). Parsing the output gives
// the same configuration. Options that smx ignores are left out.
func Dump(w io.Writer, c *Config) error {
	bw := bufio.NewWriter(w)
	source := c.File
	if source == "" {
		source = "the embedded default configuration"
	}
	fmt.Fprintf(bw, "# smx.conf: the effective configuration of %s,\n# every option with its value or default.\n\n", source)
	dumpStruct(bw, reflect.ValueOf(c).Elem(), 0)
	return bw.Flush()
}

func indent(w *bufio.Writer, depth int) {
	for i := 0; i < depth; i++ {
		w.WriteString("    ")
	}
}

func dumpStruct(w *bufio.Writer, v reflect.Value, depth int) {
	for _, f := range fieldsOf(v.Type()) {
		field := v.FieldByIndex(f.index)
		switch f.kind {
		case kindOption:
			indent(w, depth)
			fmt.Fprintf(w, "%s = %s;\n", f.name(), formatValue(field, &f))
		case kindFlags:
			indent(w, depth)
			fmt.Fprintf(w, "%s = %s;\n", f.name(), formatFlags(field))
		case kindSection:
			indent(w, depth)
			fmt.Fprintf(w, "%s {\n", f.name())
			dumpStruct(w, field, depth+1)
			indent(w, depth)
			w.WriteString("}\n")
		case kindSections:
			for i := 0; i < field.Len(); i++ {
				elem := field.Index(i)
				indent(w, depth)
				if name := nameOf(elem); name != "" {
					fmt.Fprintf(w, "%s %s {\n", f.name(), quoteWord(name))
				} else {
					fmt.Fprintf(w, "%s {\n", f.name())
				}
				dumpStruct(w, elem, depth+1)
				indent(w, depth)
				w.WriteString("}\n")
			}
		}
	}
}

func formatValue(v reflect.Value, f *fieldInfo) string {
	switch {
	case v.Type() == typeDuration:
		return formatDuration(time.Duration(v.Int()))
	case v.Type() == typeSize:
		return formatSize(Size(v.Int()))
	case v.Kind() == reflect.Slice:
		items := make([]string, v.Len())
		for i := range items {
			items[i] = quote(v.Index(i).String())
		}
		if len(items) == 0 {
			return "{ }"
		}
		return "{ " + strings.Join(items, ", ") + " }"
	case v.Kind() == reflect.String:
		if f.enum != nil && v.String() != "" {
			return v.String()
		}
		return quote(v.String())
	case v.Kind() == reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case v.Kind() == reflect.Int:
		if f.format == "octal" && v.Int() != 0 {
			return "0" + strconv.FormatInt(v.Int(), 8)
		}
		return strconv.FormatInt(v.Int(), 10)
	case v.Kind() == reflect.Uint32:
		if f.format == "hex" {
			return fmt.Sprintf("0x%08X", v.Uint())
		}
		return strconv.FormatUint(v.Uint(), 10)
	}
	panic(fmt.Sprintf("conf: no format for %s (%s)", f.name(), v.Type()))
}

// formatFlags lists every flag, the ones that are off with a "-" prefix,
// so that the dump does not depend on the defaults.
func formatFlags(v reflect.Value) string {
	var items []string
	for _, f := range fieldsOf(v.Type()) {
		if f.kind != kindOption {
			continue
		}
		if v.FieldByIndex(f.index).Bool() {
			items = append(items, f.name())
		} else {
			items = append(items, "-"+f.name())
		}
	}
	return "{ " + strings.Join(items, ", ") + " }"
}

// quoteWord writes s bare if it reads back as one word, else quoted.
func quoteWord(s string) string {
	if s == "" || !utf8.ValidString(s) {
		return quote(s)
	}
	for _, r := range s {
		if isSpace(r) || isSpecial(r) || r == '\\' || r < 0x20 || r == 0x7F {
			return quote(s)
		}
	}
	return s
}

// quote writes s as a double-quoted string with C escapes.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == utf8.RuneError && size == 1, r < 0x20, r == 0x7F:
			fmt.Fprintf(&b, `\%03o`, s[i])
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	b.WriteByte('"')
	return b.String()
}

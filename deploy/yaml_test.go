package deploy_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The module has no YAML library of its own (and the deployment tests must
// not add one), so the YAML files under deploy/ and docker-compose.yml are
// written in a strict subset that this small parser reads:
//
//   - block mappings ("key: value", "key:" followed by a deeper block) and
//     block sequences ("- value", "- key: value" starting a mapping);
//   - one-line flow sequences of scalars (["a", "b"]) and the empty {} / [];
//   - scalars: plain, "double-quoted" (Go escapes), 'single-quoted';
//   - comments, and "---" between documents.
//
// Anything else (anchors, tags, block scalars, multi-line flows, tabs) is
// an error, and so are plain scalars that YAML 1.1 and 1.2 read differently
// (yes/no/on/off, 8080:8080): quote them. Where python3 with PyYAML is
// available, TestYAMLFilesMatchPyYAML checks that a real YAML parser reads
// every file as this one does.

type yamlLine struct {
	num    int // 1-based line number
	indent int
	text   string // without indentation, comment and trailing blanks
}

// parseYAML parses the documents of src.
func parseYAML(src string) ([]any, error) {
	var docs []any
	var cur []yamlLine
	flush := func() error {
		if len(cur) == 0 {
			return nil
		}
		p := &yamlParser{lines: cur}
		v, err := p.node(cur[0].indent)
		if err != nil {
			return err
		}
		if p.i < len(p.lines) {
			l := p.lines[p.i]
			return fmt.Errorf("line %d: unexpected indentation or content: %q", l.num, l.text)
		}
		docs = append(docs, v)
		cur = nil
		return nil
	}
	for n, raw := range strings.Split(src, "\n") {
		if strings.TrimRight(raw, " ") == "---" {
			if err := flush(); err != nil {
				return nil, err
			}
			continue
		}
		body := strings.TrimLeft(raw, " ")
		if strings.HasPrefix(body, "\t") {
			return nil, fmt.Errorf("line %d: tab in indentation", n+1)
		}
		text, err := stripComment(body)
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", n+1, err)
		}
		if text == "" {
			continue
		}
		cur = append(cur, yamlLine{num: n + 1, indent: len(raw) - len(body), text: text})
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return docs, nil
}

// stripComment removes a comment (a # at the start or after a blank, outside
// quotes) and trailing blanks.
func stripComment(s string) (string, error) {
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote == '"' && c == '\\':
			i++
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			if i == 0 || strings.ContainsRune(" [,:-", rune(s[i-1])) {
				quote = c
			}
		case c == '#' && (i == 0 || s[i-1] == ' '):
			return strings.TrimRight(s[:i], " "), nil
		}
	}
	if quote != 0 {
		return "", fmt.Errorf("unterminated quote")
	}
	return strings.TrimRight(s, " "), nil
}

type yamlParser struct {
	lines []yamlLine
	i     int
}

func isSeqItem(text string) bool { return text == "-" || strings.HasPrefix(text, "- ") }

// node parses the block that starts at the current line, whose indentation
// is indent.
func (p *yamlParser) node(indent int) (any, error) {
	if isSeqItem(p.lines[p.i].text) {
		return p.seq(indent)
	}
	return p.mapping(indent)
}

func (p *yamlParser) seq(indent int) (any, error) {
	out := []any{}
	for p.i < len(p.lines) {
		l := p.lines[p.i]
		if l.indent != indent || !isSeqItem(l.text) {
			break
		}
		rest := strings.TrimLeft(strings.TrimPrefix(l.text, "-"), " ")
		switch {
		case rest == "":
			p.i++
			if p.i >= len(p.lines) || p.lines[p.i].indent <= indent {
				out = append(out, nil)
				continue
			}
			v, err := p.node(p.lines[p.i].indent)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		case mapKeyEnd(rest) >= 0:
			// "- key: value": a mapping whose first line is this one, its
			// other lines indented like its first key.
			p.lines[p.i] = yamlLine{num: l.num, indent: l.indent + len(l.text) - len(rest), text: rest}
			v, err := p.mapping(p.lines[p.i].indent)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		default:
			v, err := inlineValue(rest)
			if err != nil {
				return nil, fmt.Errorf("line %d: %v", l.num, err)
			}
			out = append(out, v)
			p.i++
		}
	}
	return out, nil
}

// mapKeyEnd returns the index of the colon that ends a mapping key in s
// ("key: value" or "key:"), or -1 if s is not a mapping entry.
func mapKeyEnd(s string) int {
	if s == "" || s[0] == '[' || s[0] == '{' {
		return -1
	}
	start := 0
	if s[0] == '"' || s[0] == '\'' {
		end := strings.IndexByte(s[1:], s[0])
		if end < 0 {
			return -1
		}
		start = end + 2
	}
	for i := start; i < len(s); i++ {
		if s[i] == ':' && (i+1 == len(s) || s[i+1] == ' ') {
			return i
		}
	}
	return -1
}

func (p *yamlParser) mapping(indent int) (any, error) {
	out := map[string]any{}
	for p.i < len(p.lines) {
		l := p.lines[p.i]
		if l.indent != indent || isSeqItem(l.text) {
			break
		}
		k := mapKeyEnd(l.text)
		if k < 0 {
			return nil, fmt.Errorf("line %d: not a \"key: value\" line: %q", l.num, l.text)
		}
		key, err := scalar(l.text[:k])
		if err != nil {
			return nil, fmt.Errorf("line %d: key: %v", l.num, err)
		}
		ks, ok := key.(string)
		if !ok {
			return nil, fmt.Errorf("line %d: key %q is not a string", l.num, l.text[:k])
		}
		if _, dup := out[ks]; dup {
			return nil, fmt.Errorf("line %d: duplicate key %q", l.num, ks)
		}
		rest := strings.TrimLeft(l.text[k+1:], " ")
		p.i++
		if rest != "" {
			v, err := inlineValue(rest)
			if err != nil {
				return nil, fmt.Errorf("line %d: %v", l.num, err)
			}
			out[ks] = v
			continue
		}
		if p.i < len(p.lines) {
			next := p.lines[p.i]
			if next.indent > indent || (next.indent == indent && isSeqItem(next.text)) {
				v, err := p.node(next.indent)
				if err != nil {
					return nil, err
				}
				out[ks] = v
				continue
			}
		}
		out[ks] = nil
	}
	return out, nil
}

// inlineValue parses the value on a line: a flow sequence of scalars, {},
// or a scalar.
func inlineValue(s string) (any, error) {
	switch {
	case s == "{}":
		return map[string]any{}, nil
	case strings.HasPrefix(s, "{"):
		return nil, fmt.Errorf("flow mappings are not supported: %q", s)
	case strings.HasPrefix(s, "["):
		if !strings.HasSuffix(s, "]") {
			return nil, fmt.Errorf("a flow sequence must end on its line: %q", s)
		}
		inner := strings.TrimSpace(s[1 : len(s)-1])
		out := []any{}
		if inner == "" {
			return out, nil
		}
		items, err := splitFlow(inner)
		if err != nil {
			return nil, err
		}
		for _, it := range items {
			if strings.ContainsAny(it[:1], "[{") {
				return nil, fmt.Errorf("nested flow collections are not supported: %q", s)
			}
			v, err := scalar(it)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	}
	return scalar(s)
}

func splitFlow(s string) ([]string, error) {
	var items []string
	var quote byte
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote == '"' && c == '\\':
			i++
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == ',':
			items = append(items, strings.TrimSpace(s[start:i]))
			start = i + 1
		}
	}
	items = append(items, strings.TrimSpace(s[start:]))
	for _, it := range items {
		if it == "" {
			return nil, fmt.Errorf("empty item in flow sequence %q", s)
		}
	}
	return items, nil
}

var (
	yamlInt       = regexp.MustCompile(`^[-+]?(0|[1-9][0-9]*)$`)
	yamlFloat     = regexp.MustCompile(`^[-+]?[0-9]+\.[0-9]+$`)
	yamlAmbiguous = regexp.MustCompile(`(?i)^(yes|no|on|off|[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9]*)?|0[0-7]+|0x[0-9a-f]+|0b[01]+|[-+]?\.?(inf|nan)|[0-9]{4}-[0-9]{2}-[0-9]{2}.*)$`)
)

// scalar parses one scalar.
func scalar(s string) (any, error) {
	switch {
	case s == "":
		return nil, fmt.Errorf("empty scalar")
	case strings.HasPrefix(s, `"`):
		if len(s) < 2 || !strings.HasSuffix(s, `"`) {
			return nil, fmt.Errorf("bad double-quoted scalar %q", s)
		}
		v, err := strconv.Unquote(s)
		if err != nil {
			return nil, fmt.Errorf("bad double-quoted scalar %q: %v", s, err)
		}
		return v, nil
	case strings.HasPrefix(s, "'"):
		if len(s) < 2 || !strings.HasSuffix(s, "'") {
			return nil, fmt.Errorf("bad single-quoted scalar %q", s)
		}
		inner := s[1 : len(s)-1]
		if strings.Contains(strings.ReplaceAll(inner, "''", ""), "'") {
			return nil, fmt.Errorf("bad single-quoted scalar %q", s)
		}
		return strings.ReplaceAll(inner, "''", "'"), nil
	}
	if strings.ContainsAny(s[:1], "&*!|>%@`{}[],?") || strings.HasPrefix(s, "- ") {
		return nil, fmt.Errorf("unsupported YAML (anchor, tag, block scalar, flow or reserved character): %q", s)
	}
	if strings.Contains(s, ": ") || strings.Contains(s, " #") {
		return nil, fmt.Errorf("plain scalar %q contains \": \" or \" #\": quote it", s)
	}
	switch s {
	case "true", "True", "TRUE":
		return true, nil
	case "false", "False", "FALSE":
		return false, nil
	case "null", "Null", "NULL", "~":
		return nil, nil
	}
	if yamlInt.MatchString(s) {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, err
		}
		return float64(n), nil // as encoding/json would read it
	}
	if yamlFloat.MatchString(s) {
		return strconv.ParseFloat(s, 64)
	}
	if yamlAmbiguous.MatchString(s) {
		return nil, fmt.Errorf("plain scalar %q is read differently by YAML 1.1 and 1.2 parsers: quote it", s)
	}
	return s, nil
}

// parseYAMLFile parses a file of the repository (path relative to its root).
func parseYAMLFile(t *testing.T, rel string) []any {
	t.Helper()
	b, err := os.ReadFile(repoPath(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	docs, err := parseYAML(string(b))
	if err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	if len(docs) == 0 {
		t.Fatalf("%s: no YAML document", rel)
	}
	return docs
}

func TestYAMLSubsetParser(t *testing.T) {
	src := `# comment
a: 1
b: "x # not a comment"   # a comment
c:
  - one
  - "two"
  - ['3', "four", 5]
d:
- k: v
  l:
    m: true
- n: null
e: {}
f: []
g: 2.5
h: redis://redis:6379
i:
---
second: doc
`
	docs, err := parseYAML(src)
	if err != nil {
		t.Fatal(err)
	}
	want := []any{
		map[string]any{
			"a": float64(1),
			"b": "x # not a comment",
			"c": []any{"one", "two", []any{"3", "four", float64(5)}},
			"d": []any{
				map[string]any{"k": "v", "l": map[string]any{"m": true}},
				map[string]any{"n": nil},
			},
			"e": map[string]any{},
			"f": []any{},
			"g": 2.5,
			"h": "redis://redis:6379",
			"i": nil,
		},
		map[string]any{"second": "doc"},
	}
	if !reflect.DeepEqual(docs, want) {
		t.Fatalf("parsed\n%#v\nwant\n%#v", docs, want)
	}
	for _, bad := range []string{
		"a: &anchor 1",
		"a: *anchor",
		"a: |\n  text",
		"a: yes",
		"a: 22:22",
		"a: {b: c}",
		"a: [b, [c]]",
		"a: 1\na: 2",
		"a:\n  b: 1\n c: 2",
		"a: b: c",
		"a: \"open",
		"a:\n\t- b",
		"just text",
	} {
		if _, err := parseYAML(bad); err == nil {
			t.Errorf("parseYAML(%q) accepted unsupported or invalid YAML", bad)
		}
	}
}

// TestYAMLFilesMatchPyYAML checks, where python3 has PyYAML, that a real
// YAML parser reads every YAML file of the deployment as parseYAML does.
func TestYAMLFilesMatchPyYAML(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not found: cross-check with a real YAML parser skipped")
	}
	if err := exec.Command(py, "-c", "import yaml").Run(); err != nil {
		t.Skip("python3 has no PyYAML: cross-check with a real YAML parser skipped")
	}
	for _, rel := range yamlFiles(t) {
		ours := parseYAMLFile(t, rel)
		out, err := exec.Command(py, "-c",
			"import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
			repoPath(t, rel)).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: PyYAML: %v\n%s", rel, err, out)
		}
		var theirs []any
		if err := json.Unmarshal(out, &theirs); err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		a, _ := json.Marshal(ours)
		b, _ := json.Marshal(theirs)
		if string(a) != string(b) {
			t.Errorf("%s: parseYAML and PyYAML disagree:\nours:   %s\npyyaml: %s", rel, a, b)
		}
	}
}

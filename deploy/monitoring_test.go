package deploy_test

import (
	"encoding/json"
	"io/fs"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// The monitoring profile of docker-compose.yml: Prometheus scrapes the
// nodes (deploy/prometheus/prometheus.yml), Grafana shows
// deploy/grafana/dashboards/presence.json through the provisioning files
// in deploy/grafana/provisioning. These tests check that the dashboard
// queries metrics and labels the nodes export, and that the files the
// profile mounts exist and agree.

const dashboardFile = "deploy/grafana/dashboards/presence.json"

// metricInfo is a series name a node exports and its labels.
type metricInfo struct {
	labels map[string]bool
	family string // the metric as registered (histograms: without _bucket, _sum, _count)
}

// addFamily records a metric family and the series names it exposes.
func addFamily(out map[string]metricInfo, name, kind string, labels []string) {
	ls := map[string]bool{}
	for _, l := range labels {
		ls[l] = true
	}
	with := func(extra string) map[string]bool {
		m := maps.Clone(ls)
		m[extra] = true
		return m
	}
	switch kind {
	case "Histogram":
		out[name+"_bucket"] = metricInfo{with("le"), name}
		out[name+"_sum"] = metricInfo{ls, name}
		out[name+"_count"] = metricInfo{ls, name}
	case "Summary":
		out[name] = metricInfo{with("quantile"), name}
		out[name+"_sum"] = metricInfo{ls, name}
		out[name+"_count"] = metricInfo{ls, name}
	default:
		out[name] = metricInfo{ls, name}
	}
}

// presenceMetrics reads the presence_* metrics the code registers, with
// their kind and labels, from the Go sources of pkg/ and cmd/ (tests
// aside): prometheus.New<Kind>[Vec|Func](prometheus.<Kind>Opts{... Name:
// "presence_..." ...}[, []string{labels}]).
func presenceMetrics(t *testing.T) map[string]metricInfo {
	t.Helper()
	ctor := regexp.MustCompile(`prometheus\.New(Counter|Gauge|Histogram|Summary)(Vec|Func)?\(prometheus\.\w+Opts\{`)
	name := regexp.MustCompile(`^\s*Name:\s*"([a-z0-9_]+)"`)
	labelList := regexp.MustCompile(`^\},\s*\[\]string\{([^}]*)\}`)
	out := map[string]metricInfo{}
	for _, dir := range []string{"pkg", "cmd"} {
		err := filepath.WalkDir(repoPath(t, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			src := string(b)
			for _, loc := range ctor.FindAllStringSubmatchIndex(src, -1) {
				kind, vec := src[loc[2]:loc[3]], loc[4] >= 0 && src[loc[4]:loc[5]] == "Vec"
				rest := src[loc[1]:]
				n := name.FindStringSubmatch(rest)
				if n == nil || !strings.HasPrefix(n[1], "presence_") {
					continue
				}
				var labels []string
				if vec {
					// The Opts literal ends at the first "}," followed by the
					// label list (Buckets' "}," is followed by more fields).
					for i := strings.Index(rest, "},"); i >= 0; {
						if m := labelList.FindStringSubmatch(rest[i:]); m != nil {
							for _, l := range strings.Split(m[1], ",") {
								labels = append(labels, strings.Trim(strings.TrimSpace(l), `"`))
							}
							break
						}
						j := strings.Index(rest[i+2:], "},")
						if j < 0 {
							break
						}
						i += 2 + j
					}
					if labels == nil {
						t.Fatalf("%s: %s is a %sVec whose labels the test cannot read", path, n[1], kind)
					}
				}
				if _, dup := out[n[1]]; dup {
					t.Fatalf("%s: %s registered twice", path, n[1])
				}
				addFamily(out, n[1], kind, labels)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(out) < 10 {
		t.Fatalf("found only %d presence_* metrics in pkg/ and cmd/: has the way they are declared changed?", len(out))
	}
	return out
}

// runtimeMetrics returns the Go and process metrics, from the collectors
// the node registers (cmd/presenced/main.go).
func runtimeMetrics(t *testing.T) map[string]metricInfo {
	t.Helper()
	main := readRepoFile(t, "cmd/presenced/main.go")
	for _, c := range []string{"collectors.NewGoCollector()", "collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})"} {
		if !strings.Contains(main, c) {
			t.Fatalf("cmd/presenced/main.go no longer registers %s: make this test register what the node does", c)
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]metricInfo{}
	for _, f := range fams {
		kind := map[string]string{"HISTOGRAM": "Histogram", "SUMMARY": "Summary"}[f.GetType().String()]
		var labels []string
		if len(f.GetMetric()) > 0 {
			for _, lp := range f.GetMetric()[0].GetLabel() {
				labels = append(labels, lp.GetName())
			}
		}
		addFamily(out, f.GetName(), kind, labels)
	}
	return out
}

// promqlRefs returns the metric names and the label names a PromQL
// expression uses.
func promqlRefs(expr string) (metrics, labels []string) {
	s := regexp.MustCompile(`"(?:[^"\\]|\\.)*"`).ReplaceAllString(expr, `""`) // string literals
	s = regexp.MustCompile(`\[[^\]]*\]`).ReplaceAllString(s, "")              // ranges: [5m], [$__rate_interval]
	matcher := regexp.MustCompile(`^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)`)
	s = regexp.MustCompile(`\{[^}]*\}`).ReplaceAllStringFunc(s, func(sel string) string {
		for _, m := range strings.Split(strings.Trim(sel, "{}"), ",") {
			if l := matcher.FindStringSubmatch(m); l != nil {
				labels = append(labels, l[1])
			}
		}
		return " "
	})
	s = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`).ReplaceAllStringFunc(s, func(g string) string {
		inner := g[strings.Index(g, "(")+1 : len(g)-1]
		for _, l := range strings.Split(inner, ",") {
			if l = strings.TrimSpace(l); l != "" {
				labels = append(labels, l)
			}
		}
		return " "
	})
	keywords := map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}
	ident := regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	for _, loc := range ident.FindAllStringIndex(s, -1) {
		if loc[0] > 0 && (s[loc[0]-1] >= '0' && s[loc[0]-1] <= '9' || s[loc[0]-1] == '.') {
			continue // the exponent or unit of a number
		}
		tok := s[loc[0]:loc[1]]
		if keywords[tok] || strings.HasPrefix(strings.TrimLeft(s[loc[1]:], " "), "(") {
			continue // a keyword, a function or an aggregation
		}
		metrics = append(metrics, tok)
	}
	return metrics, labels
}

func TestPromQLRefs(t *testing.T) {
	m, l := promqlRefs(`histogram_quantile(0.99, sum by (le, cmd) (rate(presence_redis_call_duration_seconds_bucket{instance=~"$instance", a="}"}[$__rate_interval]))) or vector(0) + sum without(x) (up{job="p"} offset 5m) * 1e3`)
	if want := []string{"presence_redis_call_duration_seconds_bucket", "up"}; !slices.Equal(m, want) {
		t.Errorf("metrics %v, want %v", m, want)
	}
	slices.Sort(l)
	if want := []string{"a", "cmd", "instance", "job", "le", "x"}; !slices.Equal(l, want) {
		t.Errorf("labels %v, want %v", l, want)
	}
}

// dashboard is the part of a Grafana dashboard the tests read.
type dashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
			Current    struct {
				Value any `json:"value"`
			} `json:"current"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID         int            `json:"id"`
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	Datasource *datasourceRef `json:"datasource"`
	GridPos    struct{ H, W, X, Y int }
	Targets    []struct {
		Expr       string         `json:"expr"`
		RefID      string         `json:"refId"`
		Datasource *datasourceRef `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's panels
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b := []byte(readRepoFile(t, dashboardFile))
	if !json.Valid(b) {
		t.Fatalf("%s is not valid JSON", dashboardFile)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// TestGrafanaDashboard checks deploy/grafana/dashboards/presence.json: valid
// JSON, every query names metrics the node exports (presence_* from the code,
// Go and process metrics from the collectors the node registers, Prometheus's
// own "up") with their labels, and every presence_* metric of the code has
// a panel.
func TestGrafanaDashboard(t *testing.T) {
	d := readDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("the dashboard needs a uid and a title (uid %q, title %q)", d.UID, d.Title)
	}
	known := presenceMetrics(t)
	maps.Copy(known, runtimeMetrics(t))
	known["up"] = metricInfo{labels: map[string]bool{}, family: "up"} // per target, from Prometheus
	targetLabels := map[string]bool{"instance": true, "job": true}

	// The data source variable, and the Prometheus job the queries filter on.
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		if v.Type == "datasource" && v.Name != "datasource" {
			t.Errorf("data source variable %q: the panels use ${datasource}", v.Name)
		}
		if v.Type == "query" {
			m := regexp.MustCompile(`^label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`).FindStringSubmatch(v.Definition)
			if m == nil {
				t.Errorf("variable %s: query %q: want label_values(metric, label)", v.Name, v.Definition)
				continue
			}
			if info, ok := known[m[1]]; !ok || !(info.labels[m[2]] || targetLabels[m[2]]) {
				t.Errorf("variable %s: %s has no label %s", v.Name, m[1], m[2])
			}
		}
	}
	if !vars["datasource"] {
		t.Error("the dashboard has no datasource variable")
	}
	job := str(get(parseYAMLFile(t, "deploy/prometheus/prometheus.yml")[0], "scrape_configs", 0, "job_name"))

	used := map[string]bool{} // metric families on the dashboard
	ids := map[int]bool{}
	var check func(ps []panel)
	check = func(ps []panel) {
		for _, p := range ps {
			if ids[p.ID] || p.ID == 0 {
				t.Errorf("panel %q: id %d is zero or not unique", p.Title, p.ID)
			}
			ids[p.ID] = true
			if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X < 0 || p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("panel %q: gridPos %+v does not fit the 24 columns", p.Title, p.GridPos)
			}
			if p.Type == "row" {
				check(p.Panels)
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: data source %+v, want uid ${datasource}", p.Title, p.Datasource)
			}
			for _, tg := range p.Targets {
				if tg.Datasource != nil && tg.Datasource.UID != "${datasource}" {
					t.Errorf("panel %q %s: data source %+v, want uid ${datasource}", p.Title, tg.RefID, tg.Datasource)
				}
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("panel %q %s: empty query", p.Title, tg.RefID)
					continue
				}
				metrics, labels := promqlRefs(tg.Expr)
				if len(metrics) == 0 {
					t.Errorf("panel %q %s: no metric in %q", p.Title, tg.RefID, tg.Expr)
				}
				allowed := maps.Clone(targetLabels)
				for _, m := range metrics {
					info, ok := known[m]
					if !ok {
						t.Errorf("panel %q %s: %s is not a metric of the node (code: pkg/, cmd/; Go and process collectors)", p.Title, tg.RefID, m)
						continue
					}
					used[info.family] = true
					maps.Copy(allowed, info.labels)
				}
				for _, l := range labels {
					if !allowed[l] {
						t.Errorf("panel %q %s: label %q: none of %v has it", p.Title, tg.RefID, l, metrics)
					}
				}
				for _, m := range regexp.MustCompile(`job\s*=\s*"([^"]*)"`).FindAllStringSubmatch(tg.Expr, -1) {
					if m[1] != job {
						t.Errorf("panel %q %s: job %q, prometheus.yml scrapes the nodes as %q", p.Title, tg.RefID, m[1], job)
					}
				}
			}
		}
	}
	check(d.Panels)

	// Every node metric has a panel; goroutines and memory too.
	for name, info := range known {
		if strings.HasPrefix(name, "presence_") && !used[info.family] {
			t.Errorf("no panel shows %s: add one to %s", info.family, dashboardFile)
		}
	}
	for _, m := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if !used[m] {
			t.Errorf("no panel shows %s", m)
		}
	}
}

// mountsOf returns a compose service's read-only bind mounts, target ->
// source (relative to the repository root), and checks that each source
// exists.
func mountsOf(t *testing.T, name string, svc any) map[string]string {
	t.Helper()
	out := map[string]string{}
	vols, _ := get(svc, "volumes").([]any)
	for _, v := range vols {
		f := strings.Split(str(v), ":")
		if len(f) != 3 || f[2] != "ro" || !strings.HasPrefix(f[0], "./") {
			t.Errorf("%s: volume %q: want ./source:target:ro", name, v)
			continue
		}
		src := strings.TrimPrefix(f[0], "./")
		if _, err := os.Stat(repoPath(t, src)); err != nil {
			t.Errorf("%s: volume source %s: %v", name, src, err)
		}
		out[f[1]] = src
	}
	return out
}

// TestComposeMonitoringProfile checks the "monitoring" profile of
// docker-compose.yml: its services, the files they mount, and that
// Prometheus scrapes the compose nodes, Grafana reads that Prometheus and
// loads the dashboard.
func TestComposeMonitoringProfile(t *testing.T) {
	profiled := composeServices(t, true)
	if got := keys(profiled); !slices.Equal(got, []string{"grafana", "prometheus"}) {
		t.Fatalf("services with a profile %v, want [grafana prometheus]", got)
	}
	for name, svc := range profiled {
		if p, _ := get(svc, "profiles").([]any); !slices.Equal(p, []any{"monitoring"}) {
			t.Errorf("%s: profiles %v, want [monitoring]", name, p)
		}
		if str(get(svc, "image")) == "" || get(svc, "build") != nil {
			t.Errorf("%s: want a published image, got image %v build %v", name, get(svc, "image"), get(svc, "build"))
		}
		ports, _ := get(svc, "ports").([]any)
		for _, p := range ports {
			if !strings.HasPrefix(str(p), "127.0.0.1:") {
				t.Errorf("%s: port %v is published on every interface: want 127.0.0.1 (development only)", name, p)
			}
		}
	}
	services := composeServices(t, false)

	// Prometheus: its config file, scraping the compose nodes on their port.
	prom := profiled["prometheus"]
	promMounts := mountsOf(t, "prometheus", prom)
	cmd, _ := get(prom, "command").([]any)
	var config string
	for _, a := range cmd {
		if v, ok := strings.CutPrefix(str(a), "--config.file="); ok {
			config = v
		}
	}
	if promMounts[config] != "deploy/prometheus/prometheus.yml" {
		t.Errorf("prometheus: --config.file=%q is not deploy/prometheus/prometheus.yml (mounts %v)", config, promMounts)
	}
	pc := parseYAMLFile(t, "deploy/prometheus/prometheus.yml")[0]
	scrapes, _ := get(pc, "scrape_configs").([]any)
	if len(scrapes) != 1 {
		t.Fatalf("prometheus.yml: %d scrape configs, want 1 (the nodes)", len(scrapes))
	}
	if p := get(scrapes[0], "metrics_path"); p != nil && p != "/metrics" {
		t.Errorf("prometheus.yml: metrics_path %v, want /metrics", p)
	}
	var targets []string
	statics, _ := get(scrapes[0], "static_configs").([]any)
	for _, sc := range statics {
		ts, _ := get(sc, "targets").([]any)
		for _, tg := range ts {
			targets = append(targets, str(tg))
		}
	}
	slices.Sort(targets)
	var want []string
	for _, n := range nodeNames {
		_, port, err := net.SplitHostPort(str(get(services, n, "environment", "PRESENCE_ADDR")))
		if err != nil {
			t.Fatalf("%s: PRESENCE_ADDR: %v", n, err)
		}
		want = append(want, n+":"+port)
	}
	if !slices.Equal(targets, want) {
		t.Errorf("prometheus.yml scrapes %v, want the compose nodes %v", targets, want)
	}

	// Grafana: the provisioning files, the data source is the compose
	// Prometheus, the provider reads the mounted dashboards.
	graf := profiled["grafana"]
	grafMounts := mountsOf(t, "grafana", graf)
	var dsFile, provFile, dashDir string
	for target, src := range grafMounts {
		switch {
		case strings.HasPrefix(target, "/etc/grafana/provisioning/datasources/") && strings.HasPrefix(src, "deploy/grafana/provisioning/datasources/"):
			dsFile = src
		case strings.HasPrefix(target, "/etc/grafana/provisioning/dashboards/") && strings.HasPrefix(src, "deploy/grafana/provisioning/dashboards/"):
			provFile = src
		case src == filepath.ToSlash(filepath.Dir(dashboardFile)):
			dashDir = target
		}
	}
	if dsFile == "" || provFile == "" || dashDir == "" {
		t.Fatalf("grafana mounts %v: want a datasource and a dashboard provider in /etc/grafana/provisioning, and %s", grafMounts, filepath.Dir(dashboardFile))
	}
	ds := get(parseYAMLFile(t, dsFile)[0], "datasources", 0)
	if str(get(ds, "type")) != "prometheus" {
		t.Errorf("%s: type %v, want prometheus", dsFile, get(ds, "type"))
	}
	u, err := url.Parse(str(get(ds, "url")))
	if err != nil || u.Hostname() != "prometheus" || u.Port() != "9090" {
		t.Errorf("%s: url %v, want the compose service prometheus on 9090", dsFile, get(ds, "url"))
	}
	if ports, _ := get(prom, "ports").([]any); len(ports) != 1 || !strings.HasSuffix(str(ports[0]), ":9090") {
		t.Errorf("prometheus ports %v: want its port 9090", ports)
	}
	d := readDashboard(t)
	for _, v := range d.Templating.List {
		if v.Type == "datasource" && v.Current.Value != get(ds, "uid") {
			t.Errorf("the dashboard's data source variable defaults to %v, %s provisions uid %v", v.Current.Value, dsFile, get(ds, "uid"))
		}
	}
	prov := get(parseYAMLFile(t, provFile)[0], "providers", 0)
	if str(get(prov, "type")) != "file" || str(get(prov, "options", "path")) != dashDir {
		t.Errorf("%s: provider type %v path %v, want file %s (where compose mounts %s)", provFile, get(prov, "type"), get(prov, "options", "path"), dashDir, filepath.Dir(dashboardFile))
	}
	if home := str(get(graf, "environment", "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")); home != "" && home != dashDir+"/"+filepath.Base(dashboardFile) {
		t.Errorf("grafana home dashboard %s, want %s/%s", home, dashDir, filepath.Base(dashboardFile))
	}
	if dep := str(get(graf, "depends_on", "prometheus", "condition")); dep == "" {
		t.Error("grafana does not depend on prometheus")
	}
	for k, v := range get(graf, "environment").(map[string]any) {
		if _, ok := v.(string); !ok {
			t.Errorf("grafana: %s: quote the value %v (compose wants strings)", k, v)
		}
	}
}

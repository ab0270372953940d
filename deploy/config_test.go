package deploy_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// yamlFiles lists the YAML files of the deployment, relative to the root.
func yamlFiles(t testing.TB) []string {
	t.Helper()
	files := []string{"docker-compose.yml"}
	m, err := filepath.Glob(repoPath(t, "deploy/k8s/*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(m) == 0 {
		t.Fatal("no manifests in deploy/k8s")
	}
	for _, f := range m {
		files = append(files, "deploy/k8s/"+filepath.Base(f))
	}
	// The monitoring profile's Prometheus and Grafana provisioning files.
	files = append(files, "deploy/prometheus/prometheus.yml")
	m, err = filepath.Glob(repoPath(t, "deploy/grafana/provisioning/*/*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(m) == 0 {
		t.Fatal("no provisioning files in deploy/grafana/provisioning")
	}
	for _, f := range m {
		files = append(files, "deploy/grafana/provisioning/"+filepath.Base(filepath.Dir(f))+"/"+filepath.Base(f))
	}
	return files
}

// knownSettings returns the PRESENCE_* variables presenced reads, from
// cmd/presenced/config.go.
func knownSettings(t testing.TB) map[string]bool {
	t.Helper()
	src := readRepoFile(t, "cmd/presenced/config.go")
	out := map[string]bool{}
	for _, m := range regexp.MustCompile(`\{"(PRESENCE_[A-Z0-9_]+)"`).FindAllStringSubmatch(src, -1) {
		out[m[1]] = true
	}
	if len(out) < 10 {
		t.Fatalf("found only %d settings in cmd/presenced/config.go: has its layout changed?", len(out))
	}
	return out
}

// envFile reads a KEY=value file as docker compose's env_file and
// cluster.sh both read it: plain lines only.
func envFile(t testing.TB, rel string) map[string]string {
	t.Helper()
	out := map[string]string{}
	line := regexp.MustCompile(`^(PRESENCE_[A-Z0-9_]+)=([^\s"'$` + "`" + `]*)$`)
	for i, l := range strings.Split(readRepoFile(t, rel), "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		m := line.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("%s:%d: not a plain PRESENCE_KEY=value line: %q", rel, i+1, l)
		}
		if _, dup := out[m[1]]; dup {
			t.Fatalf("%s:%d: %s set twice", rel, i+1, m[1])
		}
		out[m[1]] = m[2]
	}
	return out
}

// scriptConfig is what `cluster.sh config` prints.
type scriptConfig struct {
	services      []string
	env           map[string]map[string]string // node -> env
	nginxConf     string
	nginxUpstream string
}

func clusterConfig(t testing.TB) scriptConfig {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := clusterScript(ctx, "config", "--state-dir", t.TempDir(), "--port", "18080")
	if err != nil {
		t.Fatalf("cluster.sh config: %v\n%s", err, out)
	}
	c := scriptConfig{env: map[string]map[string]string{}}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.SplitN(l, " ", 3)
		switch {
		case len(f) == 2 && f[0] == "service":
			c.services = append(c.services, f[1])
		case len(f) == 3 && f[0] == "env":
			k, v, ok := strings.Cut(f[2], "=")
			if !ok {
				t.Fatalf("cluster.sh config: bad line %q", l)
			}
			if c.env[f[1]] == nil {
				c.env[f[1]] = map[string]string{}
			}
			c.env[f[1]][k] = v
		case len(f) == 2 && f[0] == "nginx-conf":
			c.nginxConf = f[1]
		case len(f) == 2 && f[0] == "nginx-upstream":
			c.nginxUpstream = f[1]
		default:
			t.Fatalf("cluster.sh config: unexpected line %q", l)
		}
	}
	return c
}

// get walks a parsed YAML tree: get(v, "services", "redis", "image").
func get(v any, path ...any) any {
	for _, p := range path {
		switch p := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[p]
		case int:
			s, ok := v.([]any)
			if !ok || p >= len(s) {
				return nil
			}
			v = s[p]
		}
	}
	return v
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func duration(t testing.TB, what string, v any) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(str(v))
	if err != nil {
		t.Fatalf("%s: %q is not a duration", what, v)
	}
	return d
}

func keys[M ~map[string]V, V any](m M) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// addressKeys are the settings that name addresses, different in every
// topology.
var addressKeys = map[string]bool{"PRESENCE_ADDR": true, "PRESENCE_REDIS_URL": true}

// composeServices returns the services of docker-compose.yml that
// `docker compose up` starts (profile: false), or those of a profile.
func composeServices(t *testing.T, profile bool) map[string]any {
	t.Helper()
	compose := parseYAMLFile(t, "docker-compose.yml")[0]
	all, ok := get(compose, "services").(map[string]any)
	if !ok {
		t.Fatal("docker-compose.yml: no services mapping")
	}
	out := map[string]any{}
	for name, svc := range all {
		if (get(svc, "profiles") != nil) == profile {
			out[name] = svc
		}
	}
	return out
}

// TestComposeMatchesClusterScript checks that docker-compose.yml and
// scripts/cluster.sh describe the same services with the same node
// settings (addresses aside), and the same nginx configuration. Services
// of a profile (monitoring) are not started by default and have no
// counterpart in cluster.sh.
func TestComposeMatchesClusterScript(t *testing.T) {
	known := knownSettings(t)
	services := composeServices(t, false)
	script := clusterConfig(t)

	if got, want := keys(services), slices.Sorted(slices.Values(script.services)); !slices.Equal(got, want) {
		t.Fatalf("compose services %v, cluster.sh services %v", got, want)
	}
	var nodes []string
	for _, name := range keys(services) {
		if strings.HasPrefix(name, "presenced-") {
			nodes = append(nodes, name)
		}
	}
	if !slices.Equal(nodes, nodeNames) {
		t.Fatalf("compose presenced services %v, want %v", nodes, nodeNames)
	}

	// Node settings: env_file, then environment; equal to cluster.sh's but
	// for the addresses.
	var nodePort string
	for _, name := range nodes {
		svc := services[name]
		env := map[string]string{}
		files, _ := get(svc, "env_file").([]any)
		for _, f := range files {
			for k, v := range envFile(t, str(f)) {
				env[k] = v
			}
		}
		envMap, ok := get(svc, "environment").(map[string]any)
		if !ok {
			t.Fatalf("%s: environment must be a mapping", name)
		}
		for k, v := range envMap {
			s, ok := v.(string)
			if !ok {
				t.Errorf("%s: %s: quote the value %v (compose wants strings)", name, k, v)
			}
			env[k] = s
		}
		for k := range env {
			if !known[k] {
				t.Errorf("%s: %s is not a setting of presenced (cmd/presenced/config.go)", name, k)
			}
		}
		theirs := script.env[name]
		if got, want := keys(env), keys(theirs); !slices.Equal(got, want) {
			t.Errorf("%s: compose sets %v, cluster.sh sets %v", name, got, want)
		}
		for k, v := range env {
			if !addressKeys[k] && theirs[k] != v {
				t.Errorf("%s: %s is %q in compose, %q in cluster.sh", name, k, v, theirs[k])
			}
		}
		if env["PRESENCE_NODE_ID"] != name {
			t.Errorf("%s: PRESENCE_NODE_ID %q, want the service name", name, env["PRESENCE_NODE_ID"])
		}
		if !strings.HasPrefix(env["PRESENCE_REDIS_URL"], "redis://redis:") {
			t.Errorf("%s: PRESENCE_REDIS_URL %q does not name the redis service", name, env["PRESENCE_REDIS_URL"])
		}
		_, port, err := net.SplitHostPort(env["PRESENCE_ADDR"])
		if err != nil {
			t.Errorf("%s: PRESENCE_ADDR %q: %v", name, env["PRESENCE_ADDR"], err)
		}
		nodePort = port
		if env["PRESENCE_TOKEN_SECRET"] == "" {
			t.Errorf("%s: no shared PRESENCE_TOKEN_SECRET", name)
		}
		shutdown := 10 * time.Second
		if v, ok := env["PRESENCE_SHUTDOWN_TIMEOUT"]; ok {
			shutdown = duration(t, name+" PRESENCE_SHUTDOWN_TIMEOUT", v)
		}
		if grace := duration(t, name+" stop_grace_period", get(svc, "stop_grace_period")); grace <= shutdown {
			t.Errorf("%s: stop_grace_period %v must exceed PRESENCE_SHUTDOWN_TIMEOUT %v", name, grace, shutdown)
		}
		if got := str(get(svc, "depends_on", "redis", "condition")); got != "service_healthy" {
			t.Errorf("%s: depends_on redis condition %q, want service_healthy", name, got)
		}
		if str(get(svc, "build", "context")) != "." || str(get(svc, "build", "dockerfile")) != "deploy/Dockerfile" {
			t.Errorf("%s: not built from deploy/Dockerfile: %v", name, get(svc, "build"))
		}
	}
	// The nodes are alike but for their id.
	strip := func(name string) string {
		// fmt prints maps sorted by key: equal trees print equal.
		return strings.ReplaceAll(fmt.Sprint(services[name]), name, "NODE")
	}
	for _, name := range nodes[1:] {
		if strip(name) != strip(nodes[0]) {
			t.Errorf("%s differs from %s beyond its name:\n%v\n%v", name, nodes[0], services[name], services[nodes[0]])
		}
	}

	// Redis: version 7 with a health check.
	if img := str(get(services, "redis", "image")); !strings.HasPrefix(img, "redis:7") {
		t.Errorf("redis image %q, want redis:7", img)
	}
	if get(services, "redis", "healthcheck", "test") == nil {
		t.Error("redis has no healthcheck")
	}

	// nginx: deploy/nginx.conf as the main config, the compose includes
	// next to it, a health check, started after the nodes.
	mounts := map[string]string{} // target -> source
	vols, _ := get(services, "nginx", "volumes").([]any)
	for _, v := range vols {
		f := strings.Split(str(v), ":")
		if len(f) != 3 || f[2] != "ro" {
			t.Errorf("nginx volume %q: want source:target:ro", v)
			continue
		}
		mounts[f[1]] = strings.TrimPrefix(f[0], "./")
	}
	if got := mounts["/etc/nginx/nginx.conf"]; got != "deploy/nginx.conf" || script.nginxConf != "deploy/nginx.conf" {
		t.Errorf("nginx.conf: compose mounts %q, cluster.sh uses %q; want deploy/nginx.conf for both", got, script.nginxConf)
	}
	entry, _ := get(services, "nginx", "entrypoint").([]any)
	if i := slices.Index(entry, any("-c")); i < 0 || i+1 >= len(entry) || entry[i+1] != "/etc/nginx/nginx.conf" {
		t.Errorf("nginx entrypoint %v does not run /etc/nginx/nginx.conf", entry)
	}
	includes := nginxIncludes(t)
	for _, inc := range includes {
		if mounts["/etc/nginx/"+inc] == "" {
			t.Errorf("deploy/nginx.conf includes %s, which compose does not mount in /etc/nginx", inc)
		}
	}
	upstream := mounts["/etc/nginx/presence-upstream.conf"]
	if upstream != script.nginxUpstream {
		t.Errorf("nginx upstream: compose mounts %q, cluster.sh derives its own from %q", upstream, script.nginxUpstream)
	}
	servers := regexp.MustCompile(`(?m)^\s*server\s+([^\s;]+)`).FindAllStringSubmatch(stripNginxComments(readRepoFile(t, upstream)), -1)
	var got []string
	for _, s := range servers {
		got = append(got, s[1])
	}
	var want []string
	for _, n := range nodes {
		want = append(want, n+":"+nodePort)
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s lists servers %v, want the compose nodes %v", upstream, got, want)
	}
	if get(services, "nginx", "healthcheck", "test") == nil {
		t.Error("nginx has no healthcheck")
	}
	deps, _ := get(services, "nginx", "depends_on").(map[string]any)
	if !slices.Equal(keys(deps), nodes) {
		t.Errorf("nginx depends on %v, want %v", keys(deps), nodes)
	}
	listen := regexp.MustCompile(`listen\s+(\d+)\s*;`).FindStringSubmatch(stripNginxComments(readRepoFile(t, mounts["/etc/nginx/presence-listen.conf"])))
	ports, _ := get(services, "nginx", "ports").([]any)
	if listen == nil || len(ports) != 1 || !strings.HasSuffix(str(ports[0]), ":"+listen[1]) {
		t.Errorf("nginx listens on %v inside its container, compose publishes %v", listen, ports)
	}
}

// TestComposeNodeHealthchecks checks the nodes' Docker health check: the
// image's own binary runs `presenced healthcheck` (GET /readyz on the node;
// the distroless image has no shell, so "CMD", never "CMD-SHELL"), given
// more time than the check's own timeout; and nginx starts once every node
// is healthy.
func TestComposeNodeHealthchecks(t *testing.T) {
	services := composeServices(t, false)
	entry := regexp.MustCompile(`(?m)^ENTRYPOINT\s+\["([^"]+)"\]`).FindStringSubmatch(readRepoFile(t, "deploy/Dockerfile"))
	if entry == nil {
		t.Fatal(`deploy/Dockerfile has no ENTRYPOINT ["..."]`)
	}
	if !strings.Contains(readRepoFile(t, "cmd/presenced/main.go"), `os.Args[1] == "healthcheck"`) {
		t.Error("cmd/presenced/main.go does not dispatch `presenced healthcheck`")
	}
	m := regexp.MustCompile(`(?m)^const healthcheckTimeout = (\d+) \* time\.Second$`).FindStringSubmatch(readRepoFile(t, "cmd/presenced/healthcheck.go"))
	if m == nil {
		t.Fatal("cmd/presenced/healthcheck.go: no `const healthcheckTimeout = N * time.Second`")
	}
	n, _ := strconv.Atoi(m[1])
	own := time.Duration(n) * time.Second

	for _, name := range nodeNames {
		hc := get(services, name, "healthcheck")
		if hc == nil {
			t.Errorf("%s has no healthcheck", name)
			continue
		}
		test, _ := get(hc, "test").([]any)
		if want := []any{"CMD", entry[1], "healthcheck"}; !reflect.DeepEqual(test, want) {
			t.Errorf("%s: healthcheck test %v, want %v (the image's binary; no shell in the image)", name, test, want)
		}
		interval := duration(t, name+" healthcheck interval", get(hc, "interval"))
		timeout := duration(t, name+" healthcheck timeout", get(hc, "timeout"))
		start := duration(t, name+" healthcheck start_period", get(hc, "start_period"))
		if timeout <= own {
			t.Errorf("%s: healthcheck timeout %v must exceed the check's own %v", name, timeout, own)
		}
		if interval < timeout || interval > 30*time.Second {
			t.Errorf("%s: healthcheck interval %v: want from the timeout (%v) to 30s", name, interval, timeout)
		}
		if r, _ := get(hc, "retries").(float64); r < 2 || r > 10 {
			t.Errorf("%s: healthcheck retries %v: want 2 to 10 (one slow answer is not a failure)", name, get(hc, "retries"))
		}
		if start < 10*time.Second {
			t.Errorf("%s: healthcheck start_period %v: want at least 10s (a node waits for Redis before it listens)", name, start)
		}
		// The check asks 127.0.0.1 when the node listens on every address.
		addr := str(get(services, name, "environment", "PRESENCE_ADDR"))
		host, _, err := net.SplitHostPort(addr)
		if err != nil || !(host == "" || host == "0.0.0.0" || host == "::" || host == "127.0.0.1") {
			t.Errorf("%s: PRESENCE_ADDR %q: the health check reaches the node on 127.0.0.1 only", name, addr)
		}
		if got := str(get(services, "nginx", "depends_on", name, "condition")); got != "service_healthy" {
			t.Errorf("nginx depends_on %s condition %q, want service_healthy", name, got)
		}
	}
}

func stripNginxComments(s string) string {
	return regexp.MustCompile(`(?m)#.*$`).ReplaceAllString(s, "")
}

// nginxIncludes returns the files deploy/nginx.conf includes.
func nginxIncludes(t testing.TB) []string {
	t.Helper()
	var out []string
	for _, m := range regexp.MustCompile(`(?m)^\s*include\s+([^\s;]+)\s*;`).FindAllStringSubmatch(stripNginxComments(readRepoFile(t, "deploy/nginx.conf")), -1) {
		out = append(out, m[1])
	}
	slices.Sort(out)
	if !slices.Equal(out, []string{"presence-listen.conf", "presence-upstream.conf"}) {
		t.Fatalf("deploy/nginx.conf includes %v, want presence-listen.conf and presence-upstream.conf", out)
	}
	return out
}

// nginxTest runs nginx -t on deploy/nginx.conf with the given include files,
// in a prefix directory of its own, as the local script does.
func nginxTest(t *testing.T, includes map[string]string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(readRepoFile(t, "deploy/nginx.conf")), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, body := range includes {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command(nginxBin(t), "-t", "-p", dir+"/", "-c", filepath.Join(dir, "nginx.conf")).CombinedOutput()
	return string(out), err
}

// TestNginxConfigAccepted runs nginx -t on deploy/nginx.conf with the
// compose includes and with includes like the ones cluster.sh writes, and
// checks the settings the deployment relies on.
func TestNginxConfigAccepted(t *testing.T) {
	upstream := readRepoFile(t, "deploy/nginx/compose-upstream.conf")
	listen := readRepoFile(t, "deploy/nginx/compose-listen.conf")
	ports := freePorts(t, 4)

	// The compose files as they are, but for the node names, which only
	// Docker's DNS resolves: nginx -t would fail to resolve them here.
	composeUp := upstream
	for _, n := range nodeNames {
		if !strings.Contains(composeUp, "server "+n+":") {
			t.Fatalf("compose-upstream.conf has no server %s", n)
		}
		composeUp = strings.ReplaceAll(composeUp, "server "+n+":", "server 127.0.0.1:")
	}
	if out, err := nginxTest(t, map[string]string{"presence-upstream.conf": composeUp, "presence-listen.conf": listen}); err != nil {
		t.Errorf("nginx -t refuses deploy/nginx.conf with the compose includes: %v\n%s", err, out)
	}

	// As cluster.sh writes them: loopback addresses and ports.
	localUp := upstream
	for i, n := range nodeNames {
		localUp = strings.ReplaceAll(localUp, "server "+n+":8080 ", fmt.Sprintf("server 127.0.0.1:%d ", ports[i+1]))
	}
	localListen := fmt.Sprintf("listen 127.0.0.1:%d;\n", ports[0])
	if out, err := nginxTest(t, map[string]string{"presence-upstream.conf": localUp, "presence-listen.conf": localListen}); err != nil {
		t.Errorf("nginx -t refuses deploy/nginx.conf with cluster.sh's includes: %v\n%s", err, out)
	}

	// The check can fail: a missing include, or a listen in the wrong place.
	if out, err := nginxTest(t, map[string]string{"presence-listen.conf": localListen}); err == nil {
		t.Errorf("nginx -t accepts deploy/nginx.conf without its upstream include:\n%s", out)
	}
	if out, err := nginxTest(t, map[string]string{"presence-upstream.conf": localUp + "\nlisten 80;\n", "presence-listen.conf": localListen}); err == nil {
		t.Errorf("nginx -t accepts a listen directive at http level:\n%s", out)
	}

	conf := stripNginxComments(readRepoFile(t, "deploy/nginx.conf"))
	for _, re := range []string{
		`map\s+\$http_upgrade\s+\$connection_upgrade\s*\{`,
		`proxy_set_header\s+Upgrade\s+\$http_upgrade\s*;`,
		`proxy_set_header\s+Connection\s+\$connection_upgrade\s*;`,
		`proxy_http_version\s+1\.1\s*;`,
		`proxy_buffering\s+off\s*;`,
		`client_max_body_size\s+64k\s*;`,
		`proxy_next_upstream\s+error\s+timeout`,
		`access_log\s+(off|/dev/stdout)`,
		`(?m)^\s*daemon\s+off\s*;`,
		`(?m)^\s*pid\s+[^/\s][^\s;]*\s*;`, // relative: inside the prefix
	} {
		if !regexp.MustCompile(re).MatchString(conf) {
			t.Errorf("deploy/nginx.conf lacks %s", re)
		}
	}
	if regexp.MustCompile(`(?m)^\s*user\s`).MatchString(conf) {
		t.Error("deploy/nginx.conf has a user directive: it must run unchanged as root and as any other user")
	}
	ws := regexp.MustCompile(`location\s+=\s+/v1/ws\s*\{([^}]*)\}`).FindStringSubmatch(conf)
	if ws == nil {
		t.Fatal("deploy/nginx.conf has no location = /v1/ws")
	}
	m := regexp.MustCompile(`proxy_read_timeout\s+(\d+)s\s*;`).FindStringSubmatch(ws[1])
	if m == nil {
		t.Fatal("the WebSocket location sets no proxy_read_timeout in seconds")
	}
	if n, _ := strconv.Atoi(m[1]); n < 60 {
		t.Errorf("WebSocket proxy_read_timeout %ss: want at least 60s (nodes ping every 15 s)", m[1])
	}
	if !regexp.MustCompile(`max_fails=\d+`).MatchString(upstream) {
		t.Error("compose-upstream.conf sets no max_fails (passive health)")
	}
}

// TestDockerfile checks the image recipe: Go as go.mod says, static
// binaries, both commands, a non-root distroless image.
func TestDockerfile(t *testing.T) {
	df := readRepoFile(t, "deploy/Dockerfile")
	gomod := readRepoFile(t, "go.mod")
	goVer := regexp.MustCompile(`(?m)^go\s+(\S+)\s*$`).FindStringSubmatch(gomod)
	if goVer == nil {
		t.Fatal("go.mod has no go directive")
	}
	arg := regexp.MustCompile(`(?m)^ARG\s+GO_VERSION=(\S+)\s*$`).FindStringSubmatch(df)
	if arg == nil || arg[1] != goVer[1] {
		t.Errorf("Dockerfile ARG GO_VERSION %v, want go.mod's go %s (GOTOOLCHAIN=local refuses an older Go)", arg, goVer[1])
	}
	froms := regexp.MustCompile(`(?m)^FROM\s+(\S+)(?:\s+AS\s+(\S+))?\s*$`).FindAllStringSubmatch(df, -1)
	if len(froms) < 2 {
		t.Fatalf("Dockerfile: want a multi-stage build, found FROM lines %v", froms)
	}
	if !strings.HasPrefix(froms[0][1], "golang:${GO_VERSION}") {
		t.Errorf("build stage FROM %s, want golang:${GO_VERSION}...", froms[0][1])
	}
	final := froms[len(froms)-1][1]
	if !strings.HasPrefix(final, "gcr.io/distroless/static") || !strings.Contains(final, "nonroot") {
		t.Errorf("final stage FROM %s, want distroless static :nonroot", final)
	}
	for _, want := range []string{"CGO_ENABLED=0", "./cmd/presenced", "./cmd/presencectl", "/out/presencectl", "EXPOSE 8080"} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	user := regexp.MustCompile(`(?m)^USER\s+(\S+)\s*$`).FindAllStringSubmatch(df, -1)
	if len(user) == 0 || strings.HasPrefix(user[len(user)-1][1], "0") || strings.HasPrefix(user[len(user)-1][1], "root") {
		t.Errorf("Dockerfile USER %v: want a non-root user", user)
	}
	if !regexp.MustCompile(`(?m)^ENTRYPOINT\s+\["/usr/local/bin/presenced"\]`).MatchString(df) {
		t.Error("Dockerfile ENTRYPOINT is not /usr/local/bin/presenced")
	}
	// The build context keeps what the build needs.
	for _, l := range strings.Split(readRepoFile(t, ".dockerignore"), "\n") {
		l = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(l), "/"), "/")
		for _, need := range []string{"go.mod", "go.sum", "cmd", "pkg", "lua", "*.go", "*.lua"} {
			if l == need {
				t.Errorf(".dockerignore excludes %s, which the image build needs", need)
			}
		}
	}
}

// TestKubernetesManifests checks deploy/k8s: every manifest parses, the
// kustomization lists them, and the Deployment, Service, PDB, ConfigMap and
// Secret fit together and fit the drain.
func TestKubernetesManifests(t *testing.T) {
	known := knownSettings(t)
	byKind := map[string]map[string]any{}
	file := map[string]string{}
	for _, rel := range yamlFiles(t) {
		if !strings.HasPrefix(rel, "deploy/k8s/") {
			continue
		}
		for _, doc := range parseYAMLFile(t, rel) {
			kind := str(get(doc, "kind"))
			if kind == "" || str(get(doc, "apiVersion")) == "" {
				t.Fatalf("%s: a document without kind or apiVersion", rel)
			}
			if kind != "Kustomization" && str(get(doc, "metadata", "name")) == "" {
				t.Errorf("%s: %s without metadata.name", rel, kind)
			}
			if _, dup := byKind[kind]; dup {
				t.Fatalf("%s: a second %s", rel, kind)
			}
			byKind[kind], file[kind] = doc.(map[string]any), rel
		}
	}
	for _, kind := range []string{"Deployment", "Service", "PodDisruptionBudget", "ConfigMap", "Secret", "Kustomization"} {
		if byKind[kind] == nil {
			t.Fatalf("deploy/k8s has no %s", kind)
		}
	}
	dep, svc, pdb, cm, sec := byKind["Deployment"], byKind["Service"], byKind["PodDisruptionBudget"], byKind["ConfigMap"], byKind["Secret"]

	// The kustomization applies every manifest but the Secret example.
	var res []string
	for _, r := range get(byKind["Kustomization"], "resources").([]any) {
		res = append(res, "deploy/k8s/"+str(r))
	}
	var want []string
	for kind, f := range file {
		if kind != "Kustomization" && kind != "Secret" {
			want = append(want, f)
		}
	}
	slices.Sort(res)
	slices.Sort(want)
	if !slices.Equal(res, want) {
		t.Errorf("kustomization resources %v, want %v (all but the Secret example)", res, want)
	}
	if slices.Contains(res, file["Secret"]) {
		t.Errorf("kustomization applies %s: its values are placeholders", file["Secret"])
	}

	// Deployment.
	if n := get(dep, "spec", "replicas"); n != float64(3) {
		t.Errorf("Deployment replicas %v, want 3", n)
	}
	selector, _ := get(dep, "spec", "selector", "matchLabels").(map[string]any)
	labels, _ := get(dep, "spec", "template", "metadata", "labels").(map[string]any)
	if len(selector) == 0 {
		t.Fatal("Deployment has no selector.matchLabels")
	}
	for k, v := range selector {
		if labels[k] != v {
			t.Errorf("pod template label %s=%v does not match the selector's %v", k, labels[k], v)
		}
	}
	if got, _ := get(svc, "spec", "selector").(map[string]any); !reflect.DeepEqual(got, selector) {
		t.Errorf("Service selector %v, want the Deployment's %v", got, selector)
	}
	if got, _ := get(pdb, "spec", "selector", "matchLabels").(map[string]any); !reflect.DeepEqual(got, selector) {
		t.Errorf("PodDisruptionBudget selector %v, want the Deployment's %v", got, selector)
	}
	if got := get(pdb, "spec", "maxUnavailable"); got != float64(1) {
		t.Errorf("PodDisruptionBudget maxUnavailable %v, want 1", got)
	}
	if str(get(svc, "spec", "sessionAffinity")) == "ClientIP" {
		t.Error("Service uses session affinity: nodes are stateless, it is not needed")
	}

	pod := get(dep, "spec", "template", "spec")
	containers, _ := get(pod, "containers").([]any)
	if len(containers) != 1 {
		t.Fatalf("want one container, got %d", len(containers))
	}
	ctr := containers[0]
	port, _ := get(ctr, "ports", 0).(map[string]any)
	if port["name"] != "http" || port["containerPort"] != float64(8080) {
		t.Errorf("container port %v, want http 8080", port)
	}
	if _, p, _ := net.SplitHostPort(str(get(cm, "data", "PRESENCE_ADDR"))); p != "8080" {
		t.Errorf("ConfigMap PRESENCE_ADDR %q does not listen on the container port 8080", get(cm, "data", "PRESENCE_ADDR"))
	}
	if got := get(svc, "spec", "ports", 0, "targetPort"); got != "http" && got != float64(8080) {
		t.Errorf("Service targetPort %v, want the container's http port", got)
	}
	for probe, path := range map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz"} {
		if got := str(get(ctr, probe, "httpGet", "path")); got != path {
			t.Errorf("%s path %q, want %s", probe, got, path)
		}
		if got := get(ctr, probe, "httpGet", "port"); got != "http" && got != float64(8080) {
			t.Errorf("%s port %v, want the container's http port", probe, got)
		}
	}
	for _, r := range []string{"requests", "limits"} {
		if m, _ := get(ctr, "resources", r, "memory").(string); m == "" {
			t.Errorf("container sets no resources.%s.memory", r)
		}
	}
	if get(pod, "securityContext", "runAsNonRoot") != true && get(ctr, "securityContext", "runAsNonRoot") != true {
		t.Error("runAsNonRoot is not set")
	}
	if uid, ok := get(pod, "securityContext", "runAsUser").(float64); ok && uid == 0 {
		t.Error("runAsUser is 0")
	}
	if get(ctr, "securityContext", "readOnlyRootFilesystem") != true {
		t.Error("readOnlyRootFilesystem is not true")
	}
	if get(ctr, "securityContext", "allowPrivilegeEscalation") != false {
		t.Error("allowPrivilegeEscalation is not false")
	}

	// The drain fits: grace > preStop + PRESENCE_SHUTDOWN_TIMEOUT.
	shutdown := 10 * time.Second
	if v := get(cm, "data", "PRESENCE_SHUTDOWN_TIMEOUT"); v != nil {
		shutdown = duration(t, "ConfigMap PRESENCE_SHUTDOWN_TIMEOUT", v)
	}
	preStop, ok := get(ctr, "lifecycle", "preStop", "sleep", "seconds").(float64)
	if !ok || preStop < 1 {
		t.Errorf("no preStop sleep (%v): the pod must leave the Service before it drains", get(ctr, "lifecycle"))
	}
	grace, _ := get(pod, "terminationGracePeriodSeconds").(float64)
	if time.Duration(grace)*time.Second <= time.Duration(preStop)*time.Second+shutdown {
		t.Errorf("terminationGracePeriodSeconds %v must exceed preStop %vs + PRESENCE_SHUTDOWN_TIMEOUT %v", grace, preStop, shutdown)
	}

	// Settings: the ConfigMap and the Secret reach the container, and name
	// real settings; the Secret example holds placeholders only.
	var cmRef, secRef string
	envFrom, _ := get(ctr, "envFrom").([]any)
	for _, e := range envFrom {
		if n := str(get(e, "configMapRef", "name")); n != "" {
			cmRef = n
		}
		if n := str(get(e, "secretRef", "name")); n != "" {
			secRef = n
		}
	}
	if cmRef != str(get(cm, "metadata", "name")) || secRef != str(get(sec, "metadata", "name")) {
		t.Errorf("envFrom names ConfigMap %q and Secret %q, the manifests define %q and %q",
			cmRef, secRef, get(cm, "metadata", "name"), get(sec, "metadata", "name"))
	}
	data, _ := get(cm, "data").(map[string]any)
	for k, v := range data {
		if !known[k] {
			t.Errorf("ConfigMap: %s is not a setting of presenced", k)
		}
		if _, ok := v.(string); !ok {
			t.Errorf("ConfigMap: %s: quote the value %v (ConfigMap values are strings)", k, v)
		}
	}
	secret, _ := get(sec, "stringData").(map[string]any)
	for _, k := range []string{"PRESENCE_TOKEN_SECRET", "PRESENCE_ADMIN_TOKEN", "PRESENCE_JWT_HS256_SECRET"} {
		v, ok := secret[k].(string)
		if !ok {
			t.Errorf("Secret example lacks %s", k)
			continue
		}
		if !strings.Contains(v, "CHANGE-ME") || len(v) >= 16 {
			t.Errorf("Secret example %s=%q: want a CHANGE-ME placeholder shorter than 16 bytes (a node refuses to start with it)", k, v)
		}
		if data[k] != nil {
			t.Errorf("%s is in the ConfigMap: secrets belong in the Secret", k)
		}
	}
	for k := range secret {
		if !known[k] {
			t.Errorf("Secret example: %s is not a setting of presenced", k)
		}
	}
	env, _ := get(ctr, "env").([]any)
	hasNodeID := false
	for _, e := range env {
		if str(get(e, "name")) == "PRESENCE_NODE_ID" && str(get(e, "valueFrom", "fieldRef", "fieldPath")) == "metadata.name" {
			hasNodeID = true
		}
	}
	if !hasNodeID {
		t.Error("PRESENCE_NODE_ID is not the pod name")
	}
}

// Package deploy checks the Kubernetes deployment files without a cluster: the Helm chart is
// rendered with Helm's own library, every object is decoded strictly into the Kubernetes API
// types, and the chart's probes, ports and time budgets are held to warmpool's config as the
// chart renders it. It is a module of its own so that the server's module stays lean.
package deploy

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/yaml"

	"warmpool/internal/config"
)

var update = flag.Bool("update", false, "rewrite kubernetes/warmpool.yaml from the chart")

// render renders the chart with values over its defaults, as helm install does (the values
// checked against values.schema.json first), and returns the documents in file order.
func render(t *testing.T, values map[string]any) []string {
	t.Helper()
	docs, err := tryRender(values)
	if err != nil {
		t.Fatal(err)
	}
	return docs
}

func tryRender(values map[string]any) ([]string, error) {
	ch, err := loader.Load("helm/warmpool")
	if err != nil {
		return nil, err
	}
	vals, err := chartutil.ToRenderValues(ch, values, chartutil.ReleaseOptions{Name: "warmpool", Namespace: "default", IsInstall: true}, chartutil.DefaultCapabilities)
	if err != nil {
		return nil, err
	}
	files, err := engine.Render(ch, vals)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	var docs []string
	for _, name := range names {
		if !strings.HasSuffix(name, ".yaml") {
			continue
		}
		for _, doc := range strings.Split(files[name], "\n---") {
			if strings.TrimSpace(doc) != "" {
				docs = append(docs, strings.TrimSpace(doc)+"\n")
			}
		}
	}
	return docs, nil
}

// operatorValues is testdata/operator-values.yaml: what a typical operator sets.
func operatorValues(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile("testdata/operator-values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// valueSets are the values every test renders the chart with.
func valueSets(t *testing.T) map[string]map[string]any {
	return map[string]map[string]any{"defaults": nil, "an operator's values": operatorValues(t)}
}

// objects decodes every document strictly (an unknown field is an error) into its API type.
type objects struct {
	deployment *appsv1.Deployment
	configMap  *corev1.ConfigMap
	services   map[string]*corev1.Service
	secrets    map[string]*corev1.Secret
	pdb        *policyv1.PodDisruptionBudget
	hpa        *autoscalingv2.HorizontalPodAutoscaler
	monitor    *serviceMonitor
}

// serviceMonitor is the Prometheus operator's type, as much of it as the chart writes.
type serviceMonitor struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		Selector struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
		Endpoints []struct {
			Port     string `json:"port"`
			Path     string `json:"path"`
			Interval string `json:"interval"`
		} `json:"endpoints"`
	} `json:"spec"`
}

func decode(t *testing.T, docs []string) objects {
	t.Helper()
	var o objects
	for _, doc := range docs {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("%v\n%s", err, doc)
		}
		var into any
		switch meta.Kind {
		case "Deployment":
			o.deployment = &appsv1.Deployment{}
			into = o.deployment
		case "ConfigMap":
			o.configMap = &corev1.ConfigMap{}
			into = o.configMap
		case "Service":
			svc := &corev1.Service{}
			if err := yaml.UnmarshalStrict([]byte(doc), svc); err != nil {
				t.Fatalf("Service does not decode strictly: %v\n%s", err, doc)
			}
			if o.services == nil {
				o.services = map[string]*corev1.Service{}
			}
			o.services[svc.Name] = svc
			continue
		case "Secret":
			sec := &corev1.Secret{}
			if err := yaml.UnmarshalStrict([]byte(doc), sec); err != nil {
				t.Fatalf("Secret does not decode strictly: %v\n%s", err, doc)
			}
			if o.secrets == nil {
				o.secrets = map[string]*corev1.Secret{}
			}
			o.secrets[sec.Name] = sec
			continue
		case "PodDisruptionBudget":
			o.pdb = &policyv1.PodDisruptionBudget{}
			into = o.pdb
		case "HorizontalPodAutoscaler":
			o.hpa = &autoscalingv2.HorizontalPodAutoscaler{}
			into = o.hpa
		case "ServiceMonitor":
			o.monitor = &serviceMonitor{}
			into = o.monitor
		default:
			t.Fatalf("unexpected kind %q", meta.Kind)
		}
		if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
			t.Fatalf("%s does not decode strictly: %v\n%s", meta.Kind, err, doc)
		}
	}
	return o
}

// Every object, optional ones included, decodes strictly into the Kubernetes types, with the
// defaults and with an operator's values.
func TestChartRendersValidObjects(t *testing.T) {
	all := decode(t, render(t, map[string]any{
		"autoscaling":    map[string]any{"enabled": true},
		"serviceMonitor": map[string]any{"enabled": true},
	}))
	if all.deployment == nil || all.configMap == nil || len(all.services) != 2 || all.pdb == nil || all.hpa == nil || all.monitor == nil || len(all.secrets) != 1 {
		t.Fatalf("missing objects: %+v", all)
	}
	if all.deployment.Spec.Replicas != nil {
		t.Error("with the autoscaler on, the Deployment must not fix replicas")
	}
	if ep := all.monitor.Spec.Endpoints; len(ep) != 1 || ep[0].Port != "admin" || ep[0].Path != "/metrics" {
		t.Errorf("ServiceMonitor endpoints: %+v", ep)
	}
	// The ServiceMonitor reaches the admin Service, and only it.
	admin := all.services["warmpool-admin"]
	if admin == nil || all.monitor.Spec.Selector.MatchLabels["app.kubernetes.io/component"] != "admin" ||
		admin.Labels["app.kubernetes.io/component"] != "admin" {
		t.Errorf("the ServiceMonitor does not select the admin Service: %+v", all.monitor.Spec.Selector)
	}
	for name, values := range valueSets(t) {
		o := decode(t, render(t, values))
		// The admin port is never on the app's Service, and has none of its own by default.
		for _, p := range o.services["warmpool"].Spec.Ports {
			if p.Name == "admin" {
				t.Errorf("%s: the admin port is on the app's Service", name)
			}
		}
		if name == "defaults" && len(o.services) != 1 {
			t.Errorf("defaults: an admin Service by default")
		}
		// The image is pinned: a tag that is not latest, or a digest.
		image := o.deployment.Spec.Template.Spec.Containers[0].Image
		if i := strings.LastIndexAny(image, ":@"); i < 0 || strings.HasSuffix(image, ":latest") || strings.HasSuffix(image, ":") {
			t.Errorf("%s: image %q is not pinned", name, image)
		}
		if c := o.deployment.Spec.Template.Spec.Containers[0]; c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s: no CPU request (the autoscaler needs one) or memory limit: %+v", name, c.Resources)
		}
	}
}

// Every pod template passes the Kubernetes Pod Security Standards' restricted profile, as the
// API server's own library evaluates it.
func TestPodPassesTheRestrictedProfile(t *testing.T) {
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	restricted := psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}
	for name, values := range valueSets(t) {
		tmpl := decode(t, render(t, values)).deployment.Spec.Template
		results := evaluator.EvaluatePod(restricted, &tmpl.ObjectMeta, &tmpl.Spec)
		if len(results) == 0 {
			t.Fatalf("%s: no check ran", name)
		}
		for _, r := range results {
			if !r.Allowed {
				t.Errorf("%s: restricted profile: %s: %s", name, r.ForbiddenReason, r.ForbiddenDetail)
			}
		}
	}
	// The evaluator does refuse what the profile forbids: a pod running as root.
	tmpl := decode(t, render(t, nil)).deployment.Spec.Template
	tmpl.Spec.SecurityContext.RunAsNonRoot = nil
	tmpl.Spec.Containers[0].SecurityContext.RunAsNonRoot = nil
	allowed := true
	for _, r := range evaluator.EvaluatePod(restricted, &tmpl.ObjectMeta, &tmpl.Spec) {
		allowed = allowed && r.Allowed
	}
	if allowed {
		t.Fatal("the evaluator allowed a pod that may run as root")
	}
}

// Installed with its defaults on an empty namespace, the chart refers to no object it does not
// create: the admin token's Secret and the ConfigMap are its own.
func TestChartRefersOnlyToWhatItCreates(t *testing.T) {
	o := decode(t, render(t, nil))
	pod := o.deployment.Spec.Template.Spec
	for _, v := range pod.Volumes {
		switch {
		case v.Secret != nil:
			if o.secrets[v.Secret.SecretName] == nil && (v.Secret.Optional == nil || !*v.Secret.Optional) {
				t.Errorf("volume %s: Secret %q is not created by the chart", v.Name, v.Secret.SecretName)
			}
		case v.ConfigMap != nil:
			if o.configMap.Name != v.ConfigMap.Name {
				t.Errorf("volume %s: ConfigMap %q is not created by the chart", v.Name, v.ConfigMap.Name)
			}
		}
	}
	c := pod.Containers[0]
	if len(c.EnvFrom) != 0 || len(pod.ImagePullSecrets) != 0 {
		t.Errorf("references by default: envFrom %v, imagePullSecrets %v", c.EnvFrom, pod.ImagePullSecrets)
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			t.Errorf("env %s refers to another object by default", e.Name)
		}
	}
	if s := o.secrets["warmpool-admin"]; s == nil || len(s.Data["admin-token"]) < 32 {
		t.Errorf("the admin token Secret: %+v", s)
	}
	// Without a token the chart says why instead of rendering a pod that cannot start.
	_, err := tryRender(map[string]any{"adminToken": map[string]any{"create": false}})
	if err == nil || !strings.Contains(err.Error(), "needs a token") {
		t.Errorf("no token: %v", err)
	}
}

// values.schema.json refuses an unknown key and a wrong type at install, and "latest".
func TestValuesSchemaRefusesMistakes(t *testing.T) {
	for name, tc := range map[string]struct {
		values map[string]any
		want   string
	}{
		"unknown key":         {map[string]any{"replicaz": 3}, "replicaz"},
		"unknown nested key":  {map[string]any{"worker": map[string]any{"maxRequest": 5}}, "maxRequest"},
		"wrong type":          {map[string]any{"replicas": "two"}, "replicas"},
		"wrong nested type":   {map[string]any{"timing": map[string]any{"warmupTimeoutSeconds": "60s"}}, "warmupTimeoutSeconds"},
		"latest":              {map[string]any{"image": map[string]any{"tag": "latest"}}, "tag"},
		"a digest that isn't": {map[string]any{"image": map[string]any{"digest": "abc"}}, "digest"},
	} {
		_, err := tryRender(tc.values)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// The chart's probes, ports and time budgets agree with the warmpool config it renders (its
// own and the operator's extraConfig, as warmpool layers them), which warmpool loads and
// validates; and the pod's security settings leave warmpool the directories it writes.
func TestChartAgreesWithWarmpoolConfig(t *testing.T) {
	for name, values := range valueSets(t) {
		t.Run(name, func(t *testing.T) {
			o := decode(t, render(t, values))
			dir := t.TempDir()
			var files []string
			c := o.deployment.Spec.Template.Spec.Containers[0]
			for i := 0; i+1 < len(c.Args); i += 2 {
				if c.Args[i] != "--config" {
					t.Fatalf("args %v", c.Args)
				}
				base := filepath.Base(c.Args[i+1])
				path := filepath.Join(dir, base)
				if err := os.WriteFile(path, []byte(o.configMap.Data[base]), 0o600); err != nil {
					t.Fatal(err)
				}
				files = append(files, path)
			}
			token := filepath.Join(dir, "admin-token") // the Secret, as mounted
			os.WriteFile(token, []byte("t\n"), 0o600)
			l, err := config.LoadAndValidate(config.Layers{Files: files, Sets: []string{"admin_token_file=" + token}})
			if err != nil {
				t.Fatalf("warmpool refuses the chart's config: %v", err)
			}
			if len(files) > 1 {
				if src := l.Source("proxy.allowed_hosts").String(); !strings.HasPrefix(src, files[1]+":") {
					t.Errorf("extraConfig's allowed_hosts comes from %q, want %s", src, files[1])
				}
			}
			checkPodAgainstConfig(t, o, &l.Config)
		})
	}
}

func checkPodAgainstConfig(t *testing.T, o objects, cfg *config.Config) {
	t.Helper()
	spec := o.deployment.Spec
	if spec.Strategy.RollingUpdate == nil || spec.Strategy.RollingUpdate.MaxUnavailable.IntValue() != 0 || spec.Strategy.RollingUpdate.MaxSurge.IntValue() != 1 {
		t.Errorf("rolling update: %+v", spec.Strategy.RollingUpdate)
	}
	pod := spec.Template.Spec
	c := pod.Containers[0]
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if want := portOf(t, cfg.Listen); ports["http"] != want {
		t.Errorf("http port %d, config listen %s", ports["http"], cfg.Listen)
	}
	if want := portOf(t, cfg.AdminListen); ports["admin"] != want {
		t.Errorf("admin port %d, config admin_listen %s", ports["admin"], cfg.AdminListen)
	}
	for name, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		want := "/readyz"
		if name == "liveness" {
			want = "/livez"
		}
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != want || p.HTTPGet.Port.String() != "admin" {
			t.Errorf("%s probe: %+v", name, p)
		}
	}
	// The startup probe's budget covers a worker's warm-up: the pod is not killed while warming.
	budget := time.Duration(c.StartupProbe.PeriodSeconds*c.StartupProbe.FailureThreshold) * time.Second
	if budget < cfg.Warmup.Timeout.Duration {
		t.Errorf("startup probe budget %s is below warmup.timeout %s", budget, cfg.Warmup.Timeout.Duration)
	}
	// Kubernetes waits long enough for warmpool's own drain.
	grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
	if need := cfg.ShutdownDelay.Duration + cfg.Worker.GracefulTimeout.Duration + 5*time.Second; grace < need {
		t.Errorf("terminationGracePeriodSeconds %s is below shutdown_delay + graceful_timeout + 5s (%s)", grace, need)
	}
	if cfg.ShutdownDelay.Duration < 2*time.Second {
		t.Errorf("shutdown_delay %s: endpoints need a few seconds to stop sending", cfg.ShutdownDelay.Duration)
	}
	if tok := cfg.AdminTokenFile; tok == "" {
		t.Error("no admin token: the admin listener faces the pod network")
	}
	// A read-only root: what warmpool writes (TMPDIR: worker sockets, spooled bodies, buffered
	// responses) is a writable volume.
	tmp := ""
	for _, e := range c.Env {
		if e.Name == "TMPDIR" {
			tmp = e.Value
		}
	}
	writable := false
	for _, m := range c.VolumeMounts {
		writable = writable || m.MountPath == tmp && !m.ReadOnly
	}
	if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem || tmp == "" || !writable {
		t.Errorf("read-only root with a writable TMPDIR: TMPDIR %q mounted writable %v", tmp, writable)
	}
	if cfg.Worker.SocketDir != "" && !strings.HasPrefix(cfg.Worker.SocketDir, tmp) {
		t.Errorf("worker.socket_dir %s is not on the writable volume", cfg.Worker.SocketDir)
	}
}

func portOf(t *testing.T, addr string) int32 {
	t.Helper()
	i := strings.LastIndexByte(addr, ':')
	var p int32
	for _, d := range addr[i+1:] {
		p = p*10 + int32(d-'0')
	}
	return p
}

// kubernetes/warmpool.yaml is the chart rendered for those who apply plain manifests: the
// defaults, but the admin token from a Secret they create (a generated one would be a secret
// committed to the repository); go test -update rewrites it.
func TestPlainManifestsMatchTheChart(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("# Rendered from deploy/helm/warmpool with its default values but adminToken.existingSecret\n")
	b.WriteString("# (go test ./... -update in deploy/). Set the image, then create the Secret first:\n")
	b.WriteString("#   kubectl create secret generic warmpool-admin --from-literal=admin-token=$(openssl rand -hex 24)\n")
	for _, doc := range render(t, map[string]any{"adminToken": map[string]any{"create": false, "existingSecret": "warmpool-admin"}}) {
		b.WriteString("---\n")
		b.WriteString(doc)
	}
	path := "kubernetes/warmpool.yaml"
	if *update {
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, b.Bytes()) {
		t.Fatalf("%s differs from the chart's rendering (go test -update)", path)
	}
}

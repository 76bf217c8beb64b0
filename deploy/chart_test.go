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
	"sigs.k8s.io/yaml"

	"warmpool/internal/config"
)

var update = flag.Bool("update", false, "rewrite kubernetes/warmpool.yaml from the chart")

// render renders the chart with values over its defaults, and returns the documents in file
// order.
func render(t *testing.T, values map[string]any) []string {
	t.Helper()
	ch, err := loader.Load("helm/warmpool")
	if err != nil {
		t.Fatal(err)
	}
	vals, err := chartutil.ToRenderValues(ch, values, chartutil.ReleaseOptions{Name: "warmpool", Namespace: "default", IsInstall: true}, chartutil.DefaultCapabilities)
	if err != nil {
		t.Fatal(err)
	}
	files, err := engine.Render(ch, vals)
	if err != nil {
		t.Fatal(err)
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
	return docs
}

// objects decodes every document strictly (an unknown field is an error) into its API type.
type objects struct {
	deployment *appsv1.Deployment
	configMap  *corev1.ConfigMap
	service    *corev1.Service
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
			o.service = &corev1.Service{}
			into = o.service
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

// Every object, optional ones included, decodes strictly into the Kubernetes types.
func TestChartRendersValidObjects(t *testing.T) {
	o := decode(t, render(t, map[string]any{
		"autoscaling":    map[string]any{"enabled": true},
		"serviceMonitor": map[string]any{"enabled": true},
	}))
	if o.deployment == nil || o.configMap == nil || o.service == nil || o.pdb == nil || o.hpa == nil || o.monitor == nil {
		t.Fatalf("missing objects: %+v", o)
	}
	if o.deployment.Spec.Replicas != nil {
		t.Error("with the autoscaler on, the Deployment must not fix replicas")
	}
	if ep := o.monitor.Spec.Endpoints; len(ep) != 1 || ep[0].Port != "admin" || ep[0].Path != "/metrics" {
		t.Errorf("ServiceMonitor endpoints: %+v", ep)
	}
}

// The chart's probes, ports and time budgets agree with the warmpool config it renders, which
// warmpool itself loads and validates.
func TestChartAgreesWithWarmpoolConfig(t *testing.T) {
	o := decode(t, render(t, nil))
	l, err := config.Parse("warmpool.toml", []byte(o.configMap.Data["warmpool.toml"]))
	if err != nil {
		t.Fatalf("the ConfigMap's config: %v", err)
	}
	token := filepath.Join(t.TempDir(), "admin-token") // the Secret, as mounted
	os.WriteFile(token, []byte("t\n"), 0o600)
	l.Config.AdminTokenFile = token
	if err := l.Validate(); err != nil {
		t.Fatalf("warmpool refuses the chart's config: %v", err)
	}
	cfg := &l.Config
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

// kubernetes/warmpool.yaml is the chart rendered with its defaults, for those who apply plain
// manifests; go test -update rewrites it.
func TestPlainManifestsMatchTheChart(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("# Rendered from deploy/helm/warmpool with its default values (go test ./... -update in deploy/).\n")
	b.WriteString("# Create the Secret first: kubectl create secret generic warmpool-admin --from-literal=admin-token=$(openssl rand -hex 24)\n")
	for _, doc := range render(t, nil) {
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

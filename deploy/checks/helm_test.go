package checks

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

const helmInstall = "scripts/test installs it: go install helm.sh/helm/v3/cmd/helm"

// manifests is a rendered chart, decoded strictly into the API types.
type manifests struct {
	deployments  map[string]*appsv1.Deployment
	statefulSets map[string]*appsv1.StatefulSet
	services     map[string]*corev1.Service
	configMaps   map[string]*corev1.ConfigMap
	pdbs         map[string]*policyv1.PodDisruptionBudget
	netpols      map[string]*networkingv1.NetworkPolicy
}

// renderChart runs helm template on the chart with values set by --set
// and decodes every manifest into its Kubernetes type, refusing unknown
// fields, as the API server's strict field validation does.
func renderChart(t *testing.T, set ...string) *manifests {
	t.Helper()
	helm := tool(t, "helm", helmInstall)
	args := []string{"template", "dash", filepath.Join(deployDir, "helm", "moat"), "--namespace", "web"}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	out := run(t, "", nil, helm, args...)
	m := &manifests{
		deployments: map[string]*appsv1.Deployment{}, statefulSets: map[string]*appsv1.StatefulSet{},
		services: map[string]*corev1.Service{}, configMaps: map[string]*corev1.ConfigMap{},
		pdbs: map[string]*policyv1.PodDisruptionBudget{}, netpols: map[string]*networkingv1.NetworkPolicy{},
	}
	for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(out, -1) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		js, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			t.Fatalf("manifest is not YAML: %v\n%s", err, doc)
		}
		var head struct{ APIVersion, Kind string }
		if err := json.Unmarshal(js, &head); err != nil {
			t.Fatal(err)
		}
		var obj interface{ GetName() string }
		switch head.APIVersion + " " + head.Kind {
		case "apps/v1 Deployment":
			obj = &appsv1.Deployment{}
		case "apps/v1 StatefulSet":
			obj = &appsv1.StatefulSet{}
		case "v1 Service":
			obj = &corev1.Service{}
		case "v1 ConfigMap":
			obj = &corev1.ConfigMap{}
		case "policy/v1 PodDisruptionBudget":
			obj = &policyv1.PodDisruptionBudget{}
		case "networking.k8s.io/v1 NetworkPolicy":
			obj = &networkingv1.NetworkPolicy{}
		default:
			t.Fatalf("the chart renders a %s %s the check does not know: add its type", head.APIVersion, head.Kind)
		}
		dec := json.NewDecoder(bytes.NewReader(js))
		dec.DisallowUnknownFields()
		if err := dec.Decode(obj); err != nil {
			t.Fatalf("%s %s: %v\n%s", head.APIVersion, head.Kind, err, doc)
		}
		switch o := obj.(type) {
		case *appsv1.Deployment:
			m.deployments[o.Name] = o
		case *appsv1.StatefulSet:
			m.statefulSets[o.Name] = o
		case *corev1.Service:
			m.services[o.Name] = o
		case *corev1.ConfigMap:
			m.configMaps[o.Name] = o
		case *policyv1.PodDisruptionBudget:
			m.pdbs[o.Name] = o
		case *networkingv1.NetworkPolicy:
			m.netpols[o.Name] = o
		}
	}
	return m
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// checkPod asserts a pod runs non-root, read-only, without capabilities
// or a service account token.
func checkPod(t *testing.T, what string, spec corev1.PodSpec) {
	t.Helper()
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("%s: pod securityContext %+v, want runAsNonRoot and a non-zero runAsUser", what, psc)
	}
	if psc != nil && (psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault) {
		t.Errorf("%s: no RuntimeDefault seccomp profile", what)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Errorf("%s: mounts a service account token it has no use for", what)
	}
	for _, c := range spec.Containers {
		sc := c.SecurityContext
		switch {
		case sc == nil:
			t.Errorf("%s/%s: no securityContext", what, c.Name)
		case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
			t.Errorf("%s/%s: root filesystem is writable", what, c.Name)
		case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
			t.Errorf("%s/%s: privilege escalation allowed", what, c.Name)
		case sc.Capabilities == nil || len(sc.Capabilities.Add) != 0 || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL":
			t.Errorf("%s/%s: capabilities %+v, want drop ALL and add none", what, c.Name, sc.Capabilities)
		}
	}
}

func TestHelmChartRendersValidKubernetesObjectsThatKeepItsPromises(t *testing.T) {
	m := renderChart(t)
	d := m.deployments["dash-moat"]
	if d == nil {
		t.Fatalf("no Deployment dash-moat; have %v", keys(m.deployments))
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Errorf("moat replicas %v, want at least 2", d.Spec.Replicas)
	}
	pod := d.Spec.Template.Spec
	checkPod(t, "moat", pod)
	c := pod.Containers[0]
	probes := map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe}
	wantPath := map[string]string{"startup": "/_moat/healthz", "liveness": "/_moat/healthz", "readiness": "/_moat/readyz"}
	for name, p := range probes {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != wantPath[name] {
			t.Errorf("%s probe %+v, want GET %s", name, p, wantPath[name])
		}
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	if v := volumes["instance-key"]; v.Secret == nil || v.Secret.SecretName != "moat-instance-key" {
		t.Errorf("instance key volume %+v, want the Secret moat-instance-key", v)
	}
	if v := volumes["config"]; v.ConfigMap == nil || v.ConfigMap.Name != "dash-moat" {
		t.Errorf("config volume %+v, want the ConfigMap dash-moat", v)
	}
	for _, v := range pod.Volumes {
		if v.ConfigMap == nil && v.Secret == nil {
			t.Errorf("moat's volume %s is writable: with a shared store moat needs none", v.Name)
		}
	}

	pdb := m.pdbs["dash-moat"]
	if pdb == nil || pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() < 1 {
		t.Errorf("PodDisruptionBudget %+v, want minAvailable ≥ 1", pdb)
	} else if !matches(pdb.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
		t.Errorf("the PodDisruptionBudget selects %v, not moat's pods %v", pdb.Spec.Selector.MatchLabels, d.Spec.Template.Labels)
	}

	svc := m.services["dash-moat"]
	if svc == nil || svc.Spec.Type != corev1.ServiceTypeLoadBalancer || svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
		t.Errorf("Service %+v, want a LoadBalancer keeping client addresses (externalTrafficPolicy Local)", svc)
	} else {
		named := map[string]bool{}
		for _, p := range c.Ports {
			named[p.Name] = true
		}
		for _, p := range svc.Spec.Ports {
			if !named[p.TargetPort.String()] {
				t.Errorf("Service port %d targets %q, which moat's container does not name", p.Port, p.TargetPort.String())
			}
		}
		if !matches(svc.Spec.Selector, d.Spec.Template.Labels) {
			t.Errorf("the Service selects %v, not moat's pods", svc.Spec.Selector)
		}
	}

	app := m.statefulSets["dash-moat-app"]
	if app == nil {
		t.Fatalf("no StatefulSet for the app; have %v", keys(m.statefulSets))
	}
	checkPod(t, "app", app.Spec.Template.Spec)
	if app.Spec.ServiceName != "dash-moat-app" || m.services["dash-moat-app"] == nil || m.services["dash-moat-app"].Spec.ClusterIP != "None" {
		t.Errorf("app serviceName %q: want a headless Service giving each replica a stable name", app.Spec.ServiceName)
	}
	np := m.netpols["dash-moat-app"]
	if np == nil || !matches(np.Spec.PodSelector.MatchLabels, app.Spec.Template.Labels) ||
		len(np.Spec.Ingress) != 1 || len(np.Spec.Ingress[0].From) != 1 ||
		!matches(np.Spec.Ingress[0].From[0].PodSelector.MatchLabels, d.Spec.Template.Labels) {
		t.Errorf("NetworkPolicy %+v: want the app reachable from moat's pods only", np)
	}

	cm := m.configMaps["dash-moat"]
	if cm == nil {
		t.Fatal("no ConfigMap dash-moat")
	}
	cfg := cm.Data["moat.yaml"]
	var want []string
	for i := range int(*app.Spec.Replicas) {
		want = append(want, fmt.Sprintf("http://dash-moat-app-%d.dash-moat-app.web.svc.cluster.local:8501", i))
	}
	var parsed struct {
		Backends map[string]struct {
			URLs []string `json:"urls"`
		} `json:"backends"`
	}
	if err := yaml.Unmarshal([]byte(cfg), &parsed); err != nil {
		t.Fatal(err)
	}
	if got := parsed.Backends["app"].URLs; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("backends.app.urls %q, want each app replica %q", got, want)
	}
	checkChartConfig(t, cfg)
}

func TestHelmChartBehindAnIngressWithACertificateSecret(t *testing.T) {
	m := renderChart(t, "service.type=ClusterIP", "certificateSecret=dash-tls", "replicaCount=3", "app.replicas=4")
	if svc := m.services["dash-moat"]; svc == nil || svc.Spec.Type != corev1.ServiceTypeClusterIP || svc.Spec.ExternalTrafficPolicy != "" {
		t.Errorf("Service %+v, want a ClusterIP for an ingress with TLS passthrough", svc)
	}
	if d := m.deployments["dash-moat"]; d == nil || *d.Spec.Replicas != 3 {
		t.Errorf("replicaCount=3 not applied")
	}
	cfg := m.configMaps["dash-moat"].Data["moat.yaml"]
	if !strings.Contains(cfg, "cert_file: /run/secrets/moat-tls/tls.crt") || strings.Contains(cfg, "acme") {
		t.Errorf("with certificateSecret, tls must name the mounted files only:\n%s", cfg)
	}
	if n := strings.Count(cfg, ".dash-moat-app.web.svc.cluster.local:8501"); n != 4 {
		t.Errorf("%d app replicas in backends.app.urls, want 4", n)
	}
	checkChartConfig(t, cfg)
}

// checkChartConfig runs moat check on the chart's moat.yaml, with the
// pod's secret_key_file replaced by a key file here.
func checkChartConfig(t *testing.T, cfg string) {
	t.Helper()
	key := filepath.Join(t.TempDir(), "instance.key")
	run(t, "", nil, moat(t), "keys", "init", "--file", key)
	cfg = regexp.MustCompile(`(?m)^secret_key_file: .*$`).ReplaceAllString(cfg, "secret_key_file: "+key)
	for _, f := range []string{"/run/secrets/moat-tls/tls.crt", "/run/secrets/moat-tls/tls.key"} {
		if strings.Contains(cfg, f) {
			cfg = strings.ReplaceAll(cfg, f, selfSignedPair(t, f))
		}
	}
	out := moatCheck(t, "helm.yaml", []byte(cfg), "MOAT_DATABASE_PASSWORD=from-a-secret")
	if !strings.Contains(out, "configuration is valid") {
		t.Errorf("moat check: %s", out)
	}
}

// selfSignedPair stands in for a mounted certificate file.
func selfSignedPair(t *testing.T, name string) string {
	t.Helper()
	dir := filepath.Join(workDir, "tls")
	if _, err := os.Stat(filepath.Join(dir, "tls.crt")); err != nil {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		writeSelfSigned(t, filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	}
	return filepath.Join(dir, filepath.Base(name))
}

func matches(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

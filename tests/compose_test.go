package tests

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v4"
)

// composeFile is the part of docker-compose.yml the test reads.
type composeFile struct {
	Services map[string]struct {
		Image     string   `yaml:"image"`
		Build     string   `yaml:"build"`
		Command   []string `yaml:"command"`
		DependsOn map[string]struct {
			Condition string `yaml:"condition"`
		} `yaml:"depends_on"`
		Ports   []string `yaml:"ports"`
		Volumes []string `yaml:"volumes"`
	} `yaml:"services"`
	Volumes map[string]any `yaml:"volumes"`
}

// TestComposeFile checks docker-compose.yml without Docker (no compose
// validator is installed here): it parses as YAML into compose's shape,
// runs the four engines and payledger built from this repository, every
// dependency and named volume exists, ports bind to loopback only, and
// every flag it gives payledger is one the binary lists.
func TestComposeFile(t *testing.T) {
	raw, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	dec.KnownFields(false)
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	for _, name := range []string{"postgres", "nats", "kurrentdb", "migrate", "payledger"} {
		if _, ok := c.Services[name]; !ok {
			t.Errorf("no service %s", name)
		}
	}
	if _, err := os.Stat("../Dockerfile"); err != nil {
		t.Fatal(err)
	}
	// ${VAR:-default} takes its default, as compose does when VAR is unset.
	vars := regexp.MustCompile(`\$\{[A-Z_]+:-([^}]*)\}`)
	flag := regexp.MustCompile(`^--([a-z-]+)$`)
	for name, s := range c.Services {
		if (s.Image == "") == (s.Build == "") {
			t.Errorf("%s: needs an image or a build, not both", name)
		}
		for dep, d := range s.DependsOn {
			if _, ok := c.Services[dep]; !ok {
				t.Errorf("%s depends on %s, which is not a service", name, dep)
			}
			switch d.Condition {
			case "service_started", "service_healthy", "service_completed_successfully":
			default:
				t.Errorf("%s: depends_on %s: condition %q", name, dep, d.Condition)
			}
		}
		for _, p := range s.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("%s publishes %s beyond loopback", name, p)
			}
		}
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if !strings.HasPrefix(src, ".") && !strings.HasPrefix(src, "/") {
				if _, ok := c.Volumes[src]; !ok {
					t.Errorf("%s mounts volume %s, which is not declared", name, src)
				}
			}
		}
		if s.Build == "" {
			continue
		}
		if len(s.Command) == 0 {
			t.Fatalf("%s: no payledger command", name)
		}
		help, _ := exec.Command(binary, s.Command[0], "-h").CombinedOutput()
		for _, arg := range s.Command[1:] {
			arg = vars.ReplaceAllString(arg, "$1")
			if m := flag.FindStringSubmatch(arg); m != nil && !regexp.MustCompile(`(?m)^\s+-`+m[1]+`\b`).Match(help) {
				t.Errorf("%s: payledger %s %s, but `payledger %s -h` does not list it", name, s.Command[0], arg, s.Command[0])
			}
			if strings.Contains(arg, "${") {
				t.Errorf("%s: %q is not a ${VAR:-default}", name, arg)
			}
		}
	}
}

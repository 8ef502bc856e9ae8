package cmd

import (
	"os"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestComposeMatchesConfig checks that the compose file's environment
// overrides are real config keys and that the values it sets are valid.
func TestComposeMatchesConfig(t *testing.T) {
	raw, err := os.ReadFile("../go-nats-jetstream-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Command     []string          `yaml:"command"`
			Environment map[string]string `yaml:"environment"`
			Volumes     []string          `yaml:"volumes"`
			Healthcheck struct {
				Test []string `yaml:"test"`
			} `yaml:"healthcheck"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &compose); err != nil {
		t.Fatal(err)
	}
	svc, ok := compose.Services["jsctl"]
	if !ok {
		t.Fatal("no jsctl service")
	}
	known := map[string]bool{}
	for _, k := range ConfigKeys() {
		known[EnvName(k)] = true
	}
	var env []string
	for name, value := range svc.Environment {
		if !known[name] {
			t.Errorf("environment %s is not a config key", name)
		}
		env = append(env, name+"="+value)
	}
	if _, err := LoadConfig("../config.example.yaml", env, nil); err != nil {
		t.Fatalf("compose settings do not load: %v", err)
	}
	if !strings.Contains(strings.Join(svc.Volumes, " "), "config.example.yaml:/etc/jsctl/config.yaml") ||
		!strings.Contains(strings.Join(svc.Command, " "), "--config /etc/jsctl/config.yaml") {
		t.Errorf("config.example.yaml is not mounted and used: volumes %v, command %v", svc.Volumes, svc.Command)
	}
	if !strings.Contains(strings.Join(svc.Healthcheck.Test, " "), "jsctl health") {
		t.Errorf("healthcheck %v does not use jsctl health", svc.Healthcheck.Test)
	}
}

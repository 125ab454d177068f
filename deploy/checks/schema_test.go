package checks

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"unicode"
)

// The google provider's schema comes from the npm package
// @cdktf/provider-google: its .jsii file (JSON) describes, for every
// resource and data source, a Config interface whose properties are the
// configurable arguments, nested blocks as struct types, each documented with
// a link to the registry page whose anchor is the Terraform name
// (…/docs/resources/cloud_run_v2_service#max_instance_count). Version 16.12.1
// of the package carries hashicorp/google 6.50.0.
const (
	// EnvProviderSchema names the .jsii file; scripts/test sets it.
	envProviderSchema = "MOAT_GOOGLE_PROVIDER_SCHEMA"
	// providerSchemaInstall is the step that provides it.
	providerSchemaInstall = "scripts/test installs it: npm pack @cdktf/provider-google@16.12.1 and set " + envProviderSchema + " to its package/.jsii"
)

// tfBlock is the schema of a resource, data source, provider or nested
// block: which arguments it takes and which of them are required.
type tfBlock struct {
	attrs  map[string]bool // argument name → required
	blocks map[string]*tfNested
	// outputs are the attributes a reference may read (resources only).
	outputs map[string]bool
}

type tfNested struct {
	block    *tfBlock
	required bool
}

// jsiiType is the part of a .jsii type the schema needs.
type jsiiType struct {
	Kind       string         `json:"kind"`
	Name       string         `json:"name"`
	Namespace  string         `json:"namespace"`
	Datatype   bool           `json:"datatype"`
	Interfaces []string       `json:"interfaces"`
	Properties []jsiiProperty `json:"properties"`
}

type jsiiProperty struct {
	Name     string `json:"name"`
	Optional bool   `json:"optional"`
	Docs     struct {
		Summary string `json:"summary"`
		Remarks string `json:"remarks"`
	} `json:"docs"`
	Type jsiiTypeRef `json:"type"`
}

type jsiiTypeRef struct {
	FQN        string `json:"fqn"`
	Primitive  string `json:"primitive"`
	Collection *struct {
		Kind        string      `json:"kind"`
		ElementType jsiiTypeRef `json:"elementtype"`
	} `json:"collection"`
	Union *struct {
		Types []jsiiTypeRef `json:"types"`
	} `json:"union"`
}

// googleSchema is the loaded provider schema.
type googleSchema struct {
	types map[string]*jsiiType
	// configs maps "resource.google_x" / "data.google_x" / "provider" to
	// the fqn of its Config interface, classes to the fqn of its class.
	configs, classes map[string]string
	blocks           map[string]*tfBlock // cache by fqn
}

var schemaOnce struct {
	sync.Once
	s   *googleSchema
	err error
}

var registryLink = regexp.MustCompile(`docs/(resources|data-sources)/([a-z0-9_]+)#([a-z0-9_]+)`)

// loadGoogleSchema reads the provider schema, once per run.
func loadGoogleSchema(t *testing.T) *googleSchema {
	t.Helper()
	path := os.Getenv(envProviderSchema)
	if path == "" {
		skipOrFail(t, "%s is not set (%s)", envProviderSchema, providerSchemaInstall)
	}
	schemaOnce.Do(func() { schemaOnce.s, schemaOnce.err = readGoogleSchema(path) })
	if schemaOnce.err != nil {
		t.Fatalf("google provider schema %s: %v (%s)", path, schemaOnce.err, providerSchemaInstall)
	}
	return schemaOnce.s
}

func readGoogleSchema(path string) (*googleSchema, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var assembly struct {
		Name    string               `json:"name"`
		Version string               `json:"version"`
		Types   map[string]*jsiiType `json:"types"`
	}
	if err := json.NewDecoder(f).Decode(&assembly); err != nil {
		return nil, err
	}
	if assembly.Name != "@cdktf/provider-google" {
		return nil, fmt.Errorf("the file is the .jsii of %q, not of @cdktf/provider-google", assembly.Name)
	}
	s := &googleSchema{types: assembly.Types, configs: map[string]string{}, classes: map[string]string{}, blocks: map[string]*tfBlock{}}
	for fqn, ty := range assembly.Types {
		if ty.Namespace == "" {
			continue
		}
		pascal := string(unicode.ToUpper(rune(ty.Namespace[0]))) + ty.Namespace[1:]
		switch {
		case ty.Kind == "interface" && ty.Name == "GoogleProviderConfig":
			s.configs["provider"] = fqn
		case ty.Kind == "interface" && ty.Name == pascal+"Config":
			for _, p := range ty.Properties {
				if m := registryLink.FindStringSubmatch(p.Docs.Remarks + p.Docs.Summary); m != nil {
					kind := "resource"
					if m[1] == "data-sources" {
						kind = "data"
					}
					key := kind + ".google_" + m[2]
					s.configs[key] = fqn
					s.classes[key] = strings.TrimSuffix(fqn, "Config")
					break
				}
			}
		}
	}
	if len(s.configs) < 1000 {
		return nil, fmt.Errorf("found only %d resources and data sources", len(s.configs))
	}
	return s, nil
}

// lookup returns the schema of key ("resource.google_x", "data.google_x"
// or "provider"), or nil for an unknown one.
func (s *googleSchema) lookup(key string) *tfBlock {
	fqn, ok := s.configs[key]
	if !ok {
		return nil
	}
	b := s.block(fqn)
	if class := s.types[s.classes[key]]; class != nil && b.outputs == nil {
		b.outputs = map[string]bool{}
		for _, p := range class.Properties {
			if p.Name != "tfResourceType" && !strings.HasSuffix(p.Name, "Input") {
				b.outputs[snake(p.Name)] = true
			}
		}
	}
	return b
}

// block builds the schema of the struct or Config interface fqn.
func (s *googleSchema) block(fqn string) *tfBlock {
	if b, ok := s.blocks[fqn]; ok {
		return b
	}
	b := &tfBlock{attrs: map[string]bool{}, blocks: map[string]*tfNested{}}
	s.blocks[fqn] = b
	ty := s.types[fqn]
	props := append([]jsiiProperty{}, ty.Properties...)
	for _, iface := range ty.Interfaces {
		if it := s.types[iface]; it != nil && strings.HasPrefix(iface, "@cdktf/provider-google.") {
			props = append(props, it.Properties...)
		}
	}
	for _, p := range props {
		name := snake(p.Name)
		if m := registryLink.FindStringSubmatch(p.Docs.Remarks + p.Docs.Summary); m != nil {
			name = m[3]
		}
		if elem := s.structOf(p.Type); elem != "" {
			b.blocks[name] = &tfNested{block: s.block(elem), required: !p.Optional}
			continue
		}
		b.attrs[name] = !p.Optional
	}
	return b
}

// structOf returns the fqn of the struct a property holds (one, or a list
// or set of them: a nested block), or "".
func (s *googleSchema) structOf(r jsiiTypeRef) string {
	switch {
	case r.FQN != "":
		if ty := s.types[r.FQN]; ty != nil && ty.Datatype {
			return r.FQN
		}
	case r.Collection != nil:
		return s.structOf(r.Collection.ElementType)
	case r.Union != nil:
		for _, u := range r.Union.Types {
			if f := s.structOf(u); f != "" {
				return f
			}
		}
	}
	return ""
}

// snake turns a jsii property name (maxInstanceCount) into Terraform's
// (max_instance_count).
func snake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

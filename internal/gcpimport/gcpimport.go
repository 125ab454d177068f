// Package gcpimport turns the Terraform of a Google Cloud front door — an
// external HTTPS load balancer with a URL map, backend services with
// Identity-Aware Proxy, Cloud Armor security policies, IAP IAM bindings,
// managed certificates and a Cloud Run service behind them — into one moat
// configuration file.
//
// It reads the .tf files with HashiCorp's HCL parser and evaluates what it
// can without Terraform: variables (defaults, terraform.tfvars,
// *.auto.tfvars and --var values), locals, string templates and a few
// functions, and references between resources by their names. Everything
// else, and every item moat has no equivalent for, becomes a YAML comment
// that says what to do instead, so the output passes `moat check` once the
// secrets it names are set.
package gcpimport

import (
	"fmt"
	"net/url"
	"strings"
)

// Options adjust an import.
type Options struct {
	// Vars set Terraform variables, as `terraform -var NAME=VALUE` does.
	Vars map[string]string
	// AppURL is where the app that ran on Cloud Run listens next to moat.
	// Default: http://127.0.0.1 with the container port the Terraform (or
	// the deploy script it runs) gives, else Cloud Run's 8080.
	AppURL string
}

// Result is an imported configuration.
type Result struct {
	// YAML is the moat configuration file, comments included.
	YAML []byte
	// Todo lists what a person must do before `moat serve`, the same
	// lines the file's header holds.
	Todo []string
	// Env names the environment variables the file expects.
	Env []string
}

// Import reads the Terraform root module in dir and writes its moat
// configuration. source names dir in the file's header.
func Import(dir string, opts Options) (*Result, error) {
	if opts.AppURL != "" {
		u, err := url.Parse(opts.AppURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" && u.Path != "/" {
			return nil, fmt.Errorf("--app-url %q: write where the app listens, such as http://127.0.0.1:8501", opts.AppURL)
		}
	}
	m, err := loadModule(dir, opts.Vars)
	if err != nil {
		return nil, err
	}
	c, err := translate(m, opts)
	if err != nil {
		return nil, err
	}
	return &Result{YAML: c.emit(m), Todo: c.todo, Env: c.env}, nil
}

// Problem is one error found in the Terraform files.
type Problem struct {
	File string
	Line int
	Msg  string
}

func (p Problem) String() string {
	switch {
	case p.File == "":
		return p.Msg
	case p.Line == 0:
		return p.File + ": " + p.Msg
	}
	return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg)
}

// Errors is every problem found, in file order.
type Errors []Problem

func (e Errors) Error() string {
	lines := make([]string, len(e))
	for i, p := range e {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

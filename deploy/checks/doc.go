// Package checks holds CI's checks of deploy/: each deployment recipe is
// parsed or rendered by the real tool and validated against what its
// platform accepts, and every moat.yaml it carries or renders passes
// `moat check`.
//
//   - terraform/cloud-run: `terraform fmt -check`; every resource, data
//     source, block and attribute checked against the google provider's 6.x
//     schema (from the npm package @cdktf/provider-google, whose .jsii file
//     carries it; the Terraform registry is out of reach); every reference
//     resolved; the moat.yaml its config module renders, applied by the real
//     terraform binary with the example terraform.tfvars.
//   - helm/moat: `helm template`, then every manifest decoded strictly into
//     the Kubernetes API types (an unknown field fails), and the chart's
//     promises checked (replicas, probes, non-root read-only pods).
//   - compose: the Compose specification's loader, and moat check.
//   - systemd: systemd-analyze verify.
//
// It is a module of its own so that moat's go.mod does not carry the
// Kubernetes and HCL libraries. scripts/test runs it with the rest; it
// installs helm, the provider schema and the other tools. Without them the
// checks skip, except under CI=true, where they fail naming the step.
package checks

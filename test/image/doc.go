// Package image tests moat's container image the way a platform runs it:
// scripts/image builds localhost/moat:dev with buildah, the test unpacks it
// into an OCI runtime bundle and runs it with runc, with a read-only root
// filesystem, no capabilities, no new privileges and the image's own user
// (uid 65532), then signs in through it.
//
// runc runs over a bundle whose spec has no rlimits (this machine refuses
// setrlimit, which podman's default ulimits need) and no network namespace
// of its own, so the container listens on the host's 127.0.0.1 beside the
// test's backend, PostgreSQL and TLS-terminating balancer.
//
// Run it with scripts/test, which installs buildah and runc (apt); it needs
// root, as runc does without a user namespace. Without buildah, runc or root
// the tests skip, except under CI=true, where they fail naming the missing
// step.
package image

#!/bin/sh
# Installs Caddy into $(go env GOPATH)/bin, for the end-to-end tests that put
# it in front of moat as a forward_auth ingress (test/e2e). Safe to run again.
set -eu
version=v2.11.9
bin="$(go env GOPATH)/bin"
if [ -x "$bin/caddy" ] &&
	go version -m "$bin/caddy" 2>/dev/null | grep -q "caddyserver/caddy/v2[[:space:]]*$version"; then
	exit 0
fi
go install github.com/caddyserver/caddy/v2/cmd/caddy@$version

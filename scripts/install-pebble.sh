#!/bin/sh
# Installs Let's Encrypt's Pebble ACME test server and its DNS helper into
# $(go env GOPATH)/bin, for internal/certs' ACME test. Safe to run again.
set -eu
version=v2.10.3
bin="$(go env GOPATH)/bin"
if [ -x "$bin/pebble" ] && [ -x "$bin/pebble-challtestsrv" ] &&
	go version -m "$bin/pebble" 2>/dev/null | grep -q "pebble/v2[[:space:]]*$version"; then
	exit 0
fi
go install github.com/letsencrypt/pebble/v2/cmd/pebble@$version github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv@$version

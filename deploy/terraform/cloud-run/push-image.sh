#!/usr/bin/env bash
# push-image.sh SOURCE REF: build an image and push it to Artifact Registry,
# for the Cloud Run module's terraform_data resources.
#   SOURCE "moat": moat itself, with scripts/image of this checkout
#   SOURCE DIR:    a directory with a Containerfile (the Streamlit app)
# Needs buildah and gcloud (signed in to the project).
set -euo pipefail
source=$1 ref=$2
registry=${ref%%/*}
gcloud auth print-access-token | buildah login --username oauth2accesstoken --password-stdin "$registry"
if [ "$source" = moat ]; then
	"$(dirname "$0")/../../../scripts/image" --tag "$ref" --push "$ref"
else
	buildah build --quiet -f "$source/Containerfile" -t "$ref" "$source"
	buildah push --quiet "$ref" "docker://$ref"
fi

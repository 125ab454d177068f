# Artifact Registry, and the two images pushed to it from this checkout:
# moat (scripts/image, FROM scratch) and the Streamlit app. The machine that
# runs terraform apply needs buildah and gcloud (logged in); with moat_image
# and app_image set, nothing is built.
resource "google_artifact_registry_repository" "images" {
  project       = var.project
  location      = var.region
  repository_id = var.name
  format        = "DOCKER"
  description   = "moat and the ${var.name} app"
  depends_on    = [google_project_service.apis]
}

locals {
  registry   = "${var.region}-docker.pkg.dev/${var.project}/${google_artifact_registry_repository.images.repository_id}"
  moat_image = var.moat_image != "" ? var.moat_image : "${local.registry}/moat:${var.image_tag}"
  app_image  = var.app_image != "" ? var.app_image : "${local.registry}/app:${var.image_tag}"
  app_source = var.app_source != "" ? var.app_source : "${path.module}/../../../examples/streamlit-dashboard"
}

resource "terraform_data" "moat_image" {
  count            = var.moat_image == "" ? 1 : 0
  triggers_replace = [local.moat_image]
  provisioner "local-exec" {
    command = "${path.module}/push-image.sh moat ${local.moat_image}"
  }
}

resource "terraform_data" "app_image" {
  count            = var.app_image == "" ? 1 : 0
  triggers_replace = [local.app_image]
  provisioner "local-exec" {
    command = "${path.module}/push-image.sh ${local.app_source} ${local.app_image}"
  }
}

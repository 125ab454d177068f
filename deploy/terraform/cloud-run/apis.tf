# Every API the module uses, enabled by Terraform rather than in the console
# (the seed's prerequisite 3).
locals {
  apis = concat(
    [
      "artifactregistry.googleapis.com",
      "compute.googleapis.com",
      "iam.googleapis.com",
      "run.googleapis.com",
      "secretmanager.googleapis.com",
      "servicenetworking.googleapis.com",
      "sqladmin.googleapis.com",
    ],
    var.memorystore ? ["redis.googleapis.com"] : [],
    var.dns_zone != "" ? ["dns.googleapis.com"] : [],
  )
}

resource "google_project_service" "apis" {
  for_each           = toset(local.apis)
  project            = var.project
  service            = each.value
  disable_on_destroy = false
}

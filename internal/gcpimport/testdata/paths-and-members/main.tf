# Two hosts with path rules, Cloud Run v2 with its port, IAM members of
# every kind, a public status path, a bucket, and locals.
variable "domain" {
  type = string
}

variable "staff" {
  type    = list(string)
  default = ["user:alice@example.org"]
}

locals {
  app_host    = "app.${var.domain}"
  status_host = "status.${var.domain}"
}

resource "google_cloud_run_v2_service" "api" {
  name     = "reports-api"
  location = "europe-west1"
  template {
    containers {
      image = "europe-docker.pkg.dev/p/r/api:latest"
      ports {
        container_port = 8501
      }
    }
  }
}

resource "google_compute_region_network_endpoint_group" "api" {
  name                  = "reports-api-neg"
  region                = "europe-west1"
  network_endpoint_type = "SERVERLESS"
  cloud_run {
    service = google_cloud_run_v2_service.api.name
  }
}

resource "google_compute_backend_service" "app" {
  name = "reports-app"
  backend {
    group = google_compute_region_network_endpoint_group.api.id
  }
  iap {
    enabled              = true
    oauth2_client_id     = "123.apps.googleusercontent.com"
    oauth2_client_secret = "not-read"
  }
  enable_cdn = true
}

resource "google_compute_backend_service" "status" {
  name = "reports-status"
  backend {
    group = google_compute_region_network_endpoint_group.api.id
  }
}

resource "google_compute_backend_bucket" "static" {
  name        = "reports-static"
  bucket_name = "reports-static-bucket"
}

resource "google_compute_url_map" "lb" {
  name            = "reports-lb"
  default_service = google_compute_backend_service.app.id

  host_rule {
    hosts        = [local.app_host]
    path_matcher = "app"
  }
  host_rule {
    hosts        = [local.status_host]
    path_matcher = "status"
  }

  path_matcher {
    name            = "app"
    default_service = google_compute_backend_service.app.id
    path_rule {
      paths   = ["/static/*"]
      service = google_compute_backend_bucket.static.id
    }
    path_rule {
      paths   = ["/healthz"]
      service = google_compute_backend_service.status.id
    }
  }

  path_matcher {
    name            = "status"
    default_service = google_compute_backend_service.status.id
  }
}

resource "google_compute_managed_ssl_certificate" "cert" {
  name = "reports-cert"
  managed {
    domains = [local.app_host, local.status_host, "old.${var.domain}"]
  }
}

resource "google_iap_web_backend_service_iam_binding" "staff" {
  project             = "p"
  web_backend_service = google_compute_backend_service.app.name
  role                = "roles/iap.httpsResourceAccessor"
  members = concat(var.staff, [
    "domain:Example.com",
    "group:data-team@example.com",
    "serviceAccount:reporter@p.iam.gserviceaccount.com",
    "allAuthenticatedUsers",
  ])
}

resource "google_iap_web_backend_service_iam_member" "partner" {
  web_backend_service = "reports-app"
  role                = "roles/iap.httpsResourceAccessor"
  member              = "user:bob@partner.example"
  condition {
    title      = "until-june"
    expression = "request.time < timestamp(\"2026-06-30T00:00:00Z\")"
  }
}

resource "google_iap_web_backend_service_iam_member" "viewer" {
  web_backend_service = google_compute_backend_service.app.name
  role                = "roles/iap.tunnelResourceAccessor"
  member              = "user:carol@example.org"
}

resource "google_project_service" "iap" {
  service = "iap.googleapis.com"
}

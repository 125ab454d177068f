## Provider ##
provider "google" {
    credentials = file(var.credentials_file)
    project = var.project_id
    region  = var.default_region
}

data "google_cloud_run_service" "default" {
  name     = "${var.prefix}-app"
  location = var.default_region
  depends_on = [ google_artifact_registry_repository.my-repo ]
}

## Artifact Registry ##
resource "google_artifact_registry_repository" "my-repo" {
  location      = var.default_region
  repository_id = "${var.prefix}-repo"
  description   = "docker repository"
  format        = "DOCKER"
  provisioner "local-exec" {
    command = "sh docker-build.sh"
  }
}

## SSL Certificate ##
resource "google_compute_managed_ssl_certificate" "default" {
  name = "${var.prefix}-ssl-certificate"
  managed {
    domains = [
      var.oauth_domain,
      var.non_oauth_domain,
    ]
  }
}

## Network Endpoint Group ##
resource "google_compute_region_network_endpoint_group" "default" {
  name                  = "${var.prefix}-neg"
  region                = var.default_region
  network_endpoint_type = "SERVERLESS"
  cloud_run {
    service = data.google_cloud_run_service.default.name
  }
}

## Load Balancer Backend Service ##
resource "google_compute_backend_service" "oauth" {
  name       = "${var.prefix}-oauth-backend-service"
  timeout_sec = 30

  backend {
    group = google_compute_region_network_endpoint_group.default.id
  }

  iap {
    oauth2_client_id = google_iap_client.oauth_client.client_id
    oauth2_client_secret = google_iap_client.oauth_client.secret
  }

  depends_on = [ google_iap_client.oauth_client ]
}

resource "google_compute_backend_service" "non-oauth" {
  name       = "${var.prefix}-non-oauth-backend-service"
  timeout_sec = 30

  backend {
    group = google_compute_region_network_endpoint_group.default.id
  }

  iap {
    oauth2_client_id = google_iap_client.non-oauth_client.client_id
    oauth2_client_secret = google_iap_client.non-oauth_client.secret
  }

  security_policy = google_compute_security_policy.non-oauth.id
}

## Load Balancer ##
resource "google_compute_url_map" "default" {
  name            = "${var.prefix}-url-map"
  default_service = google_compute_backend_service.oauth.id

  host_rule {
    hosts        = [var.non_oauth_domain]
    path_matcher = "non-oauth"
  }

  path_matcher {
    name            = "non-oauth"
    default_service = google_compute_backend_service.non-oauth.id
  }
}

## Load Balancer Proxy ##
resource "google_compute_target_https_proxy" "default" {
  name             = "${var.prefix}-https-proxy"
  url_map          = google_compute_url_map.default.id
  ssl_certificates = [google_compute_managed_ssl_certificate.default.id]
}

## Load Balancer Forwarding Rule ##
resource "google_compute_global_forwarding_rule" "oauth" {
  name       = "${var.prefix}-oauth-forwarding-rule"
  target     = google_compute_target_https_proxy.default.id
  ip_address = google_compute_global_address.oauth.address
  port_range = "443-443"
}

resource "google_compute_global_forwarding_rule" "non-oauth" {
  name       = "${var.prefix}-non-oauth-forwarding-rule"
  target     = google_compute_target_https_proxy.default.id
  ip_address = google_compute_global_address.non-oauth.address
  port_range = "443-443"
}

## IP Address ##
resource "google_compute_global_address" "oauth" {
  name = "${var.prefix}-oauth-global-address"
}

resource "google_compute_global_address" "non-oauth" {
  name = "${var.prefix}-non-oauth-global-address"
}

## IAP OAuth Client ##
resource "google_iap_client" "oauth_client" {
  display_name = "IAP OAuth Client"
  brand        = "projects/${var.project_number}/brands/${var.project_number}"
}

resource "google_iap_client" "non-oauth_client" {
  display_name = "IAP Non OAuth Client"
  brand        = "projects/${var.project_number}/brands/${var.project_number}"
}

## IAP IAM ##
resource "google_iap_web_backend_service_iam_binding" "default" {
  web_backend_service = google_compute_backend_service.oauth.name
  role = "roles/iap.httpsResourceAccessor"
  members = [
    "domain:example.com",
    "user:alice@example.org",
  ]
}


## Cloud Armor ##
resource "google_compute_security_policy" "non-oauth"{
  name = "${var.prefix}-non-oauth-security-policy"
  description = "non-oauth security policy"
  rule {
    action = "allow"
    priority = 0
    match {
      versioned_expr = "SRC_IPS_V1"
      config {
        src_ip_ranges = ["203.0.113.7/32"]
      }
    }
    description = "allow rule"
  }
  rule {
    action = "deny(403)"
    priority = 2147483647
    match {
      versioned_expr = "SRC_IPS_V1"
      config {
        src_ip_ranges = ["*"]
      }
    }
    description = "default deny rule"
  }
}

# One global external Application Load Balancer for both hosts: one address,
# a Google-managed certificate for both names, HTTP redirected to HTTPS, a
# serverless NEG to the Cloud Run service. It routes every host to moat,
# which routes by host itself.
resource "google_compute_global_address" "lb" {
  project    = var.project
  name       = "${var.name}-lb"
  depends_on = [google_project_service.apis]
}

# Issued once both names resolve to the address (up to 60 minutes).
resource "google_compute_managed_ssl_certificate" "hosts" {
  project = var.project
  name    = "${var.name}-hosts"
  managed {
    domains = [var.staff_host, var.partner_host]
  }
  depends_on = [google_project_service.apis]
}

resource "google_compute_region_network_endpoint_group" "moat" {
  project               = var.project
  name                  = "${var.name}-moat"
  region                = var.region
  network_endpoint_type = "SERVERLESS"
  cloud_run {
    service = google_cloud_run_v2_service.moat.name
  }
}

# Cloud Armor at the edge for floods only: Google's front end absorbs L3/L4
# attacks on its own, this policy bans an address past a request ceiling.
# moat applies the rules that matter (the customer's VPN allow-list, WAF).
resource "google_compute_security_policy" "edge" {
  count   = var.edge_security_policy ? 1 : 0
  project = var.project
  name    = "${var.name}-edge"
  type    = "CLOUD_ARMOR"
  rule {
    priority    = 1000
    action      = "rate_based_ban"
    description = "ban an address that floods"
    match {
      versioned_expr = "SRC_IPS_V1"
      config {
        src_ip_ranges = ["*"]
      }
    }
    rate_limit_options {
      conform_action   = "allow"
      exceed_action    = "deny(429)"
      enforce_on_key   = "IP"
      ban_duration_sec = 600
      rate_limit_threshold {
        count        = var.edge_requests_per_minute
        interval_sec = 60
      }
    }
  }
  rule {
    priority    = 2147483647
    action      = "allow"
    description = "everything else goes on to moat"
    match {
      versioned_expr = "SRC_IPS_V1"
      config {
        src_ip_ranges = ["*"]
      }
    }
  }
  depends_on = [google_project_service.apis]
}

# On Google's load balancer the backend timeout bounds a WebSocket's whole
# life (the seed's timeout_sec = 30 cut Streamlit every 30 s). 3600 s, as
# Cloud Run's own request timeout (service.tf), the lower of the two limits.
resource "google_compute_backend_service" "moat" {
  project               = var.project
  name                  = "${var.name}-moat"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  protocol              = "HTTPS"
  timeout_sec           = 3600
  security_policy       = var.edge_security_policy ? google_compute_security_policy.edge[0].id : null
  backend {
    group = google_compute_region_network_endpoint_group.moat.id
  }
  log_config {
    enable      = true
    sample_rate = 1
  }
}

resource "google_compute_url_map" "https" {
  project         = var.project
  name            = "${var.name}-https"
  default_service = google_compute_backend_service.moat.id
}

resource "google_compute_target_https_proxy" "moat" {
  project          = var.project
  name             = "${var.name}-https"
  url_map          = google_compute_url_map.https.id
  ssl_certificates = [google_compute_managed_ssl_certificate.hosts.id]
}

resource "google_compute_global_forwarding_rule" "https" {
  project               = var.project
  name                  = "${var.name}-https"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  ip_address            = google_compute_global_address.lb.id
  port_range            = "443"
  target                = google_compute_target_https_proxy.moat.id
}

resource "google_compute_url_map" "http" {
  project = var.project
  name    = "${var.name}-http"
  default_url_redirect {
    https_redirect         = true
    redirect_response_code = "MOVED_PERMANENTLY_DEFAULT"
    strip_query            = false
  }
}

resource "google_compute_target_http_proxy" "redirect" {
  project = var.project
  name    = "${var.name}-http"
  url_map = google_compute_url_map.http.id
}

resource "google_compute_global_forwarding_rule" "http" {
  project               = var.project
  name                  = "${var.name}-http"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  ip_address            = google_compute_global_address.lb.id
  port_range            = "80"
  target                = google_compute_target_http_proxy.redirect.id
}

resource "google_dns_record_set" "hosts" {
  for_each     = var.dns_zone == "" ? toset([]) : toset([var.staff_host, var.partner_host])
  project      = var.project
  managed_zone = var.dns_zone
  name         = "${each.value}."
  type         = "A"
  ttl          = 300
  rrdatas      = [google_compute_global_address.lb.address]
  depends_on   = [google_project_service.apis]
}

# One SSO host behind a Cloud Armor policy with every kind of rule.
variable "office_ip" {
  default = "198.51.100.0/24"
}

resource "google_compute_backend_service" "app" {
  name            = "armored-app"
  security_policy = google_compute_security_policy.edge.self_link
  iap {
    oauth2_client_id     = "id"
    oauth2_client_secret = "secret"
  }
}

resource "google_iap_web_iam_member" "everyone_at_example" {
  role   = "roles/iap.httpsResourceAccessor"
  member = "domain:example.com"
}

resource "google_compute_url_map" "lb" {
  name            = "armored-lb"
  default_service = google_compute_backend_service.app.id
}

resource "google_compute_managed_ssl_certificate" "cert" {
  name = "armored-cert"
  managed {
    domains = ["armored.example.com"]
  }
}

resource "google_compute_security_policy" "edge" {
  name        = "edge-policy"
  description = "office first, then limits"

  adaptive_protection_config {
    layer_7_ddos_defense_config {
      enable = true
    }
  }

  rule {
    action   = "allow"
    priority = 100
    match {
      versioned_expr = "SRC_IPS_V1"
      config {
        src_ip_ranges = [var.office_ip]
      }
    }
  }

  rule {
    action   = "deny(404)"
    priority = 200
    match {
      expr {
        expression = "request.path.startsWith('/admin')"
      }
    }
    description = "hide the admin pages"
  }

  rule {
    action   = "deny(403)"
    priority = 300
    match {
      expr {
        expression = "origin.region_code == 'CN'"
      }
    }
  }

  rule {
    action   = "throttle"
    priority = 400
    match {
      versioned_expr = "SRC_IPS_V1"
      config {
        src_ip_ranges = ["*"]
      }
    }
    rate_limit_options {
      conform_action = "allow"
      exceed_action  = "deny(429)"
      enforce_on_key = "IP"
      rate_limit_threshold {
        count        = 100
        interval_sec = 60
      }
    }
  }

  rule {
    action   = "rate_based_ban"
    priority = 500
    match {
      expr {
        expression = "request.path.startsWith('/api/')"
      }
    }
    rate_limit_options {
      conform_action = "allow"
      exceed_action  = "deny(403)"
      enforce_on_key_configs {
        enforce_on_key_type = "HTTP_HEADER"
        enforce_on_key_name = "X-Api-Key"
      }
      enforce_on_key_configs {
        enforce_on_key_type = "IP"
      }
      rate_limit_threshold {
        count        = 1000
        interval_sec = 60
      }
      ban_duration_sec = 600
      ban_threshold {
        count        = 5000
        interval_sec = 600
      }
    }
  }

  rule {
    action   = "deny(403)"
    priority = 600
    match {
      expr {
        expression = "evaluatePreconfiguredWaf('sqli-v33-stable', {'sensitivity': 2}) || evaluatePreconfiguredWaf('xss-v33-stable', {'sensitivity': 1})"
      }
    }
  }

  rule {
    action   = "redirect"
    priority = 700
    match {
      expr {
        expression = "request.path == '/old'"
      }
    }
    redirect_options {
      type   = "EXTERNAL_302"
      target = "https://armored.example.com/new"
    }
  }

  rule {
    action   = "deny(403)"
    priority = 800
    preview  = true
    match {
      expr {
        expression = "request.headers['user-agent'].contains('curl')"
      }
    }
  }

  rule {
    action   = "allow"
    priority = 900
    match {
      expr {
        expression = "request.method == 'GET'"
      }
    }
    header_action {
      request_headers_to_adds {
        header_name  = "X-Checked"
        header_value = "yes"
      }
    }
  }
}

resource "google_compute_security_policy" "spare" {
  name = "spare-policy"
  rule {
    action   = "deny(502)"
    priority = 2147483647
    match {
      versioned_expr = "SRC_IPS_V1"
      config {
        src_ip_ranges = ["*"]
      }
    }
  }
}

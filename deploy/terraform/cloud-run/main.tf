# moat on Cloud Run, for teams that still deploy there: moat is the ingress
# container, the dashboard a sidecar on localhost that nothing else can reach.
# Cloud Run terminates TLS, so moat runs with server.http_mode: serve. Unlike
# the seed's setup there is no console step: no IAP brand, no Identity Platform
# settings, no service identity to create by hand.
terraform {
  required_providers {
    google = { source = "hashicorp/google", version = ">= 5.0" }
  }
}

resource "google_secret_manager_secret" "config" {
  project   = var.project
  secret_id = "${var.name}-config"
  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_version" "config" {
  secret      = google_secret_manager_secret.config.id
  secret_data = var.moat_config_yaml
}

resource "google_service_account" "moat" {
  project      = var.project
  account_id   = "${var.name}-moat"
  display_name = "moat front door for ${var.name}"
}

resource "google_secret_manager_secret_iam_member" "config" {
  secret_id = google_secret_manager_secret.config.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.moat.email}"
}

resource "google_cloud_run_v2_service" "app" {
  project  = var.project
  name     = var.name
  location = var.region
  ingress  = "INGRESS_TRAFFIC_ALL"

  template {
    service_account = google_service_account.moat.email
    # Cloud Run's request timeout also bounds WebSockets: set it to the
    # maximum so Streamlit sessions are not cut (moat itself has no cap).
    timeout                          = "3600s"
    session_affinity                 = true # Streamlit uploads need sticky sessions
    max_instance_request_concurrency = 250

    containers {
      name  = "moat"
      image = var.moat_image
      args  = ["serve", "-c", "/etc/moat/moat.yaml"]
      ports {
        container_port = 8080
      }
      volume_mounts {
        name       = "config"
        mount_path = "/etc/moat"
      }
      startup_probe {
        tcp_socket {
          port = 8080
        }
      }
      depends_on = ["dashboard"]
    }

    containers {
      name  = "dashboard"
      image = var.app_image
      # Streamlit listens on localhost only: moat is the only way in.
      args = ["streamlit", "run", "app.py", "--server.address", "127.0.0.1", "--server.port", "8501", "--server.headless", "true"]
      startup_probe {
        http_get {
          path = "/_stcore/health"
          port = 8501
        }
      }
    }

    volumes {
      name = "config"
      secret {
        secret = google_secret_manager_secret.config.secret_id
        items {
          version = "latest"
          path    = "moat.yaml"
        }
      }
    }
  }
  depends_on = [google_secret_manager_secret_version.config, google_secret_manager_secret_iam_member.config]
}

# moat does the access control, so the service itself is open to all.
resource "google_cloud_run_v2_service_iam_member" "public" {
  project  = var.project
  location = var.region
  name     = google_cloud_run_v2_service.app.name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

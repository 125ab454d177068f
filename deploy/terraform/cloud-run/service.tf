# The Cloud Run service: moat is the ingress container, the Streamlit app a
# sidecar listening on 127.0.0.1 that nothing else can reach.
locals {
  moat_port = 8080
}

resource "google_cloud_run_v2_service" "moat" {
  project  = var.project
  name     = var.name
  location = var.region
  # Only the load balancer reaches the service (the seed's
  # --ingress internal-and-cloud-load-balancing), and it sends no Google
  # identity: moat decides who enters, so Cloud Run's invoker check is off.
  ingress              = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
  invoker_iam_disabled = true
  deletion_protection  = var.deletion_protection

  template {
    service_account       = google_service_account.moat.email
    execution_environment = "EXECUTION_ENVIRONMENT_GEN2"
    # Cloud Run's request timeout bounds a WebSocket too, and 3600 s is its
    # maximum (the load balancer's backend timeout is set to match), so a
    # Streamlit socket lives at most 60 minutes; Streamlit's page then
    # reconnects on its own and, within server.disconnectedSessionTTL, keeps
    # its session state. moat itself puts no cap on WebSockets.
    timeout = "3600s"
    # Best effort: a browser's requests and its WebSocket reconnect reach
    # the same instance while it lives (Streamlit keeps sessions in memory).
    session_affinity                 = true
    max_instance_request_concurrency = 250
    scaling {
      min_instance_count = var.min_instances
      max_instance_count = var.max_instances
    }
    vpc_access {
      network_interfaces {
        network    = google_compute_network.moat.id
        subnetwork = google_compute_subnetwork.run.id
      }
      egress = "PRIVATE_RANGES_ONLY" # Google sign-in still goes out directly
    }

    containers {
      name       = "moat"
      image      = local.moat_image
      depends_on = ["app"]
      ports {
        container_port = local.moat_port
      }
      dynamic "env" {
        for_each = local.env_secrets
        content {
          name = env.value
          value_source {
            secret_key_ref {
              secret  = google_secret_manager_secret.moat[env.key].secret_id
              version = "latest"
            }
          }
        }
      }
      volume_mounts {
        name       = "config"
        mount_path = "/etc/moat"
      }
      resources {
        limits = {
          cpu    = "1"
          memory = "512Mi"
        }
        cpu_idle          = true
        startup_cpu_boost = true
      }
      startup_probe {
        http_get {
          path = "/_moat/healthz"
          port = local.moat_port
        }
        period_seconds    = 1
        timeout_seconds   = 1
        failure_threshold = 30
      }
      liveness_probe {
        http_get {
          path = "/_moat/healthz"
          port = local.moat_port
        }
        period_seconds = 15
      }
    }

    containers {
      name  = "app"
      image = local.app_image
      # The example app checks X-Moat-Assertion against moat's keys, served
      # on moat's internal listener, which the sidecar shares.
      env {
        name  = "MOAT_JWKS_URL"
        value = "http://127.0.0.1:9090/_moat/jwks.json"
      }
      env {
        name  = "MOAT_ISSUER"
        value = "https://${var.staff_host}"
      }
      env {
        name  = "MOAT_AUDIENCE"
        value = "${var.staff_host},${var.partner_host}"
      }
      resources {
        limits = {
          cpu    = "1"
          memory = "1Gi"
        }
      }
      startup_probe {
        http_get {
          path = "/_stcore/health"
          port = 8501
        }
        period_seconds    = 2
        failure_threshold = 60
      }
    }

    volumes {
      name = "config"
      secret {
        secret = google_secret_manager_secret.config.secret_id
        items {
          # The exact version, so that a changed moat.yaml rolls out a new
          # revision.
          version = google_secret_manager_secret_version.config.version
          path    = "moat.yaml"
        }
      }
    }
  }

  depends_on = [
    google_secret_manager_secret_iam_member.moat,
    google_secret_manager_secret_version.instance_key,
    google_secret_manager_secret_version.database_password,
    google_secret_manager_secret_version.google_client_secret,
    google_secret_manager_secret_version.redis_auth,
    google_sql_user.moat,
    google_sql_database.moat,
    terraform_data.moat_image,
    terraform_data.app_image,
  ]
}

# The moat CLI against the same store, for what the console would otherwise
# be needed for: creating the first users and admins, rotating keys.
#   gcloud run jobs execute NAME-moat-cli --region REGION --wait \
#     --args=users,add,yuki@customer.example,--group,customer
# (the one-time password is in the execution's log).
resource "google_cloud_run_v2_job" "cli" {
  project             = var.project
  name                = "${var.name}-moat-cli"
  location            = var.region
  deletion_protection = var.deletion_protection
  template {
    task_count = 1
    template {
      service_account = google_service_account.moat.email
      max_retries     = 0
      vpc_access {
        network_interfaces {
          network    = google_compute_network.moat.id
          subnetwork = google_compute_subnetwork.run.id
        }
        egress = "PRIVATE_RANGES_ONLY"
      }
      containers {
        image = local.moat_image
        args  = ["version"]
        dynamic "env" {
          for_each = local.env_secrets
          content {
            name = env.value
            value_source {
              secret_key_ref {
                secret  = google_secret_manager_secret.moat[env.key].secret_id
                version = "latest"
              }
            }
          }
        }
        volume_mounts {
          name       = "config"
          mount_path = "/etc/moat"
        }
      }
      volumes {
        name = "config"
        secret {
          secret = google_secret_manager_secret.config.secret_id
          items {
            version = google_secret_manager_secret_version.config.version
            path    = "moat.yaml"
          }
        }
      }
    }
  }
  depends_on = [google_cloud_run_v2_service.moat]
}

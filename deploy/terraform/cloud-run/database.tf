# Cloud SQL for PostgreSQL: moat's users, sessions, keys and audit log,
# shared by every instance. Private address only; TLS required.
resource "google_sql_database_instance" "moat" {
  project             = var.project
  name                = "${var.name}-moat"
  region              = var.region
  database_version    = "POSTGRES_16"
  deletion_protection = var.deletion_protection

  settings {
    tier              = var.database_tier
    edition           = "ENTERPRISE"
    availability_type = "ZONAL"
    ip_configuration {
      ipv4_enabled    = false
      private_network = google_compute_network.moat.id
      ssl_mode        = "ENCRYPTED_ONLY"
    }
    backup_configuration {
      enabled                        = true
      point_in_time_recovery_enabled = true
    }
  }
  depends_on = [google_service_networking_connection.private_services]
}

resource "google_sql_database" "moat" {
  project  = var.project
  name     = "moat"
  instance = google_sql_database_instance.moat.name
}

# Generated for this apply only: it goes to the database user and to Secret
# Manager through write-only attributes and never into the state. Letters
# and digits only, so it needs no escaping in moat's store: URL.
ephemeral "random_password" "database" {
  length  = 32
  special = false
}

resource "google_sql_user" "moat" {
  project             = var.project
  name                = "moat"
  instance            = google_sql_database_instance.moat.name
  password_wo         = ephemeral.random_password.database.result
  password_wo_version = var.database_password_version
}

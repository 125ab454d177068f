# Secret Manager holds every secret moat needs; Cloud Run hands each to moat
# as an environment variable. Terraform writes them through write-only
# attributes: none is in the plan or the state.
locals {
  secrets = {
    instance-key         = "MOAT_SECRET_KEY"
    database-password    = "MOAT_DATABASE_PASSWORD"
    google-client-secret = "MOAT_GOOGLE_CLIENT_SECRET"
  }
  env_secrets = merge(local.secrets, var.memorystore ? { redis-auth = "MOAT_REDIS_AUTH" } : {})
}

resource "google_secret_manager_secret" "moat" {
  for_each  = local.env_secrets
  project   = var.project
  secret_id = "${var.name}-moat-${each.key}"
  replication {
    auto {}
  }
  depends_on = [google_project_service.apis]
}

# The instance key: base64 of 32 random letters and digits (190 bits), the
# form MOAT_SECRET_KEY takes. It is made once and never replaced: a new key
# could not open what the old one sealed.
ephemeral "random_password" "instance_key" {
  length  = 32
  special = false
}

resource "google_secret_manager_secret_version" "instance_key" {
  secret                 = google_secret_manager_secret.moat["instance-key"].id
  secret_data_wo         = base64encode(ephemeral.random_password.instance_key.result)
  secret_data_wo_version = 1
}

resource "google_secret_manager_secret_version" "database_password" {
  secret                 = google_secret_manager_secret.moat["database-password"].id
  secret_data_wo         = ephemeral.random_password.database.result
  secret_data_wo_version = var.database_password_version
}

resource "google_secret_manager_secret_version" "google_client_secret" {
  secret                 = google_secret_manager_secret.moat["google-client-secret"].id
  secret_data_wo         = var.google_client_secret
  secret_data_wo_version = var.google_client_secret_version
}

resource "google_secret_manager_secret_version" "redis_auth" {
  count                  = var.memorystore ? 1 : 0
  secret                 = google_secret_manager_secret.moat["redis-auth"].id
  secret_data_wo         = google_redis_instance.counters[0].auth_string
  secret_data_wo_version = 1
}

# moat.yaml itself holds no secret (each is an ${ENV} reference), so it may
# sit in the state; Cloud Run mounts it from this secret as a file.
resource "google_secret_manager_secret" "config" {
  project   = var.project
  secret_id = "${var.name}-moat-config"
  replication {
    auto {}
  }
  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "config" {
  secret      = google_secret_manager_secret.config.id
  secret_data = module.config.moat_yaml
}

resource "google_service_account" "moat" {
  project      = var.project
  account_id   = "${var.name}-moat"
  display_name = "moat, the front door of ${var.name}"
  depends_on   = [google_project_service.apis]
}

resource "google_secret_manager_secret_iam_member" "moat" {
  for_each  = merge(google_secret_manager_secret.moat, { config = google_secret_manager_secret.config })
  project   = var.project
  secret_id = each.value.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.moat.email}"
}

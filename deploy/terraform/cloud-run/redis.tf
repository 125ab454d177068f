# Optional Memorystore for Redis: moat's counters (rate limits, bans) shared
# by every instance. Reached over the private network, with AUTH.
resource "google_redis_instance" "counters" {
  count                   = var.memorystore ? 1 : 0
  project                 = var.project
  name                    = "${var.name}-moat"
  region                  = var.region
  tier                    = "BASIC"
  memory_size_gb          = 1
  redis_version           = "REDIS_7_2"
  authorized_network      = google_compute_network.moat.id
  connect_mode            = "PRIVATE_SERVICE_ACCESS"
  auth_enabled            = true
  transit_encryption_mode = "DISABLED"
  depends_on              = [google_service_networking_connection.private_services]
}

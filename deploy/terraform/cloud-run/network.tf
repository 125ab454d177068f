# A private network: Cloud Run reaches Cloud SQL (and Memorystore) over it
# with direct VPC egress; neither has a public address.
resource "google_compute_network" "moat" {
  project                 = var.project
  name                    = "${var.name}-moat"
  auto_create_subnetworks = false
  depends_on              = [google_project_service.apis]
}

resource "google_compute_subnetwork" "run" {
  project                  = var.project
  name                     = "${var.name}-run"
  region                   = var.region
  network                  = google_compute_network.moat.id
  ip_cidr_range            = var.subnet_cidr
  private_ip_google_access = true
}

# Private services access: the range Google's managed services (Cloud SQL,
# Memorystore) take their private addresses from.
resource "google_compute_global_address" "private_services" {
  project       = var.project
  name          = "${var.name}-private-services"
  purpose       = "VPC_PEERING"
  address_type  = "INTERNAL"
  prefix_length = 20
  network       = google_compute_network.moat.id
}

resource "google_service_networking_connection" "private_services" {
  network                 = google_compute_network.moat.id
  service                 = "servicenetworking.googleapis.com"
  reserved_peering_ranges = [google_compute_global_address.private_services.name]
}

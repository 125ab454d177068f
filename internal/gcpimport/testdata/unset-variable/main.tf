variable "prefix" {
  default = "dash"
}

variable "domain" {
  description = "the dashboard's host; no default"
}

resource "google_compute_backend_service" "app" {
  name = "${var.prefix}-app"
}

resource "google_compute_url_map" "lb" {
  name            = "${var.prefix}-lb"
  default_service = google_compute_backend_service.app.id
  host_rule {
    hosts        = [var.domain]
    path_matcher = "app"
  }
  path_matcher {
    name            = "app"
    default_service = google_compute_backend_service.app.id
  }
}

output "url" {
  value       = google_cloud_run_v2_service.app.uri
  description = "The service's URL; map your own domains to it."
}

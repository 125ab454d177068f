output "address" {
  value       = google_compute_global_address.lb.address
  description = "The load balancer's address: both hosts' A records point here."
}

output "dns_records" {
  value       = var.dns_zone == "" ? { for h in [var.staff_host, var.partner_host] : h => "A ${google_compute_global_address.lb.address}" } : {}
  description = "A records to create at your DNS provider (empty when dns_zone manages them)."
}

output "oauth_redirect_uri" {
  value       = "https://${var.staff_host}/_moat/oidc/callback"
  description = "The authorized redirect URI of the OAuth client for Google sign-in."
}

output "cli_job" {
  value       = google_cloud_run_v2_job.cli.name
  description = "Cloud Run job running the moat CLI against the store: gcloud run jobs execute JOB --region REGION --wait --args=users,add,EMAIL,--group,GROUP"
}

output "moat_yaml" {
  value       = module.config.moat_yaml
  description = "The rendered moat.yaml (no secrets in it)."
}

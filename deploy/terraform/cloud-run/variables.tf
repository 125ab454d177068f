variable "project" {
  type        = string
  description = "Google Cloud project id."
}

variable "region" {
  type        = string
  default     = "asia-northeast1"
  description = "Cloud Run region."
}

variable "name" {
  type        = string
  default     = "dashboard"
  description = "Service name; also prefixes the secret and service account."
}

variable "moat_image" {
  type        = string
  description = "moat container image (built from deploy/Dockerfile)."
}

variable "app_image" {
  type        = string
  description = "The Streamlit app's image; it must run streamlit from its working directory."
}

variable "moat_config_yaml" {
  type        = string
  sensitive   = true
  description = <<-EOT
    moat.yaml for this service. It must set server.http_addr ":8080", server.http_mode serve,
    trusted_proxies for Google's front end, store: postgres://… (Cloud SQL) and, for more than one
    instance, counters: redis://… (Memorystore); backends point at http://127.0.0.1:8501.
  EOT
}

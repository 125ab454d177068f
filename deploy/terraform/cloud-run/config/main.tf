# Renders moat.yaml for the seed's system on Cloud Run. No providers and no
# resources: the parent module passes what it created (addresses), and CI
# applies this module alone to check the result with `moat check`.
terraform {
  required_version = ">= 1.11"
}

variable "staff_host" {
  type = string
}

variable "staff_members" {
  type = list(string)
}

variable "staff_hosted_domain" {
  type = string
}

variable "partner_host" {
  type = string
}

variable "partner_group" {
  type = string
}

variable "partner_source_ranges" {
  type = list(string)
}

variable "google_client_id" {
  type = string
}

variable "port" {
  type = number
}

variable "database_host" {
  type = string
}

variable "redis_host" {
  type = string
}

variable "trusted_proxies" {
  type = list(string)
}

output "moat_yaml" {
  value = templatefile("${path.module}/moat.yaml.tftpl", {
    staff_host            = var.staff_host
    staff_members         = var.staff_members
    staff_hosted_domain   = var.staff_hosted_domain
    partner_host          = var.partner_host
    partner_group         = var.partner_group
    partner_source_ranges = var.partner_source_ranges
    google_client_id      = var.google_client_id
    port                  = var.port
    database_host         = var.database_host
    redis_host            = var.redis_host
    trusted_proxies       = var.trusted_proxies
  })
  description = "moat.yaml. It holds no secret: moat expands each $${MOAT_…} from the environment, which Cloud Run fills from Secret Manager."
}

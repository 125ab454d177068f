variable "project" {
  type        = string
  description = "Google Cloud project id."
}

variable "region" {
  type        = string
  default     = "asia-northeast1"
  description = "Region of Cloud Run, Cloud SQL, Artifact Registry and Memorystore."
}

variable "name" {
  type        = string
  default     = "dashboard"
  description = "Name of the Cloud Run service; prefixes every other resource."
}

variable "staff_host" {
  type        = string
  description = "Host name the team signs in on with Google (the seed's OAuth host)."
}

variable "staff_members" {
  type        = list(string)
  description = "Who may use staff_host after Google sign-in: domain:DOMAIN, user:EMAIL or group:NAME (moat's groups)."
}

variable "staff_hosted_domain" {
  type        = string
  default     = ""
  description = "Google Workspace domain to ask for and check (the hd claim); empty for any Google account."
}

variable "partner_host" {
  type        = string
  description = "Host name the customer signs in on with email and password (the seed's non-OAuth host)."
}

variable "partner_group" {
  type        = string
  default     = "customer"
  description = "moat group whose members may use partner_host."
}

variable "partner_source_ranges" {
  type        = list(string)
  description = "The customer's fixed VPN addresses (CIDRs); every other address gets 403 on partner_host."
}

variable "google_client_id" {
  type        = string
  description = "Client ID of the OAuth client for Google sign-in (made in the console: see README.md)."
}

variable "google_client_secret" {
  type        = string
  sensitive   = true
  ephemeral   = true
  description = "Its client secret. Ephemeral: written to Secret Manager, never to the plan or the state. Pass it as TF_VAR_google_client_secret when google_client_secret_version changes (and on the first apply)."
}

variable "google_client_secret_version" {
  type        = number
  default     = 1
  description = "Raise it to write a new google_client_secret."
}

variable "database_password_version" {
  type        = number
  default     = 1
  description = "Raise it to give the database user a new generated password."
}

variable "image_tag" {
  type        = string
  default     = "v1"
  description = "Tag of the images this module builds and pushes; change it to ship a new build."
}

variable "moat_image" {
  type        = string
  default     = ""
  description = "An existing moat image to run instead of building one from this checkout with scripts/image."
}

variable "app_image" {
  type        = string
  default     = ""
  description = "An existing Streamlit app image to run instead of building app_source."
}

variable "app_source" {
  type        = string
  default     = ""
  description = "Directory with the app's Containerfile; empty for examples/streamlit-dashboard of this checkout."
}

variable "min_instances" {
  type        = number
  default     = 0
  description = "Instances kept warm; 0 scales to zero (moat is ready in well under a second)."
}

variable "max_instances" {
  type        = number
  default     = 3
  description = "Upper bound on instances. Above 1, set memorystore = true so rate limits and bans are shared."
}

variable "database_tier" {
  type        = string
  default     = "db-f1-micro"
  description = "Cloud SQL machine tier."
}

variable "deletion_protection" {
  type        = bool
  default     = true
  description = "Protect the Cloud SQL instance and the Cloud Run service from terraform destroy."
}

variable "memorystore" {
  type        = bool
  default     = false
  description = "Create a Memorystore for Redis instance for moat's counters (rate limits, bans shared by all instances)."
}

variable "edge_security_policy" {
  type        = bool
  default     = true
  description = "Attach a Cloud Armor policy at the load balancer: a per-address request ceiling for floods. moat applies the real L7 rules."
}

variable "edge_requests_per_minute" {
  type        = number
  default     = 1200
  description = "Requests per minute one address may send before Cloud Armor bans it for 10 minutes."
}

variable "subnet_cidr" {
  type        = string
  default     = "10.8.0.0/24"
  description = "Subnet Cloud Run's direct VPC egress uses to reach Cloud SQL and Memorystore."
}

variable "dns_zone" {
  type        = string
  default     = ""
  description = "Cloud DNS managed zone to add A records for both hosts to; empty to create them elsewhere (see the dns_records output)."
}

variable "project_id" {
  description = "project id"
  type        = string
  default     = <your-project-id>
}

variable "project_number" {
  description = "project number"
  type        = string
  default     = <your-project-number>
}

variable "default_region" {
  description = "The default region for resources"
  default     = <your-region>
}

variable "credentials_file" {
  description = "The path to the credentials file"
  default     = <your-credentials-file>
}

variable "prefix" {
  description = "The prefix to use for all resources"
  default     = "streamlit-app"
}

variable "oauth_domain" {
  description = "The domain to use for oauth"
  default = <your-oauth-domain>
}

variable "non_oauth_domain" {
  description = "The domain to use for non-oauth"
  default = <your-non-oauth-domain>
}

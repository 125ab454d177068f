variable "project_id" {
  description = "project id"
  type        = string
  default     = "example-project"
}

variable "project_number" {
  description = "project number"
  type        = string
  default     = "123456789012"
}

variable "default_region" {
  description = "The default region for resources"
  default     = "asia-northeast1"
}

variable "credentials_file" {
  description = "The path to the credentials file"
  default     = "credentials.json"
}

variable "prefix" {
  description = "The prefix to use for all resources"
  default     = "streamlit-app"
}

variable "oauth_domain" {
  description = "The domain to use for oauth"
  default = "dash.example.com"
}

variable "non_oauth_domain" {
  description = "The domain to use for non-oauth"
  default = "dash-partner.example.com"
}

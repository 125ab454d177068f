terraform {
  # 1.11: write-only attributes, so generated secrets never reach the state.
  required_version = ">= 1.11"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.50"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.7" # ephemeral random_password
    }
  }
}

provider "google" {
  project = var.project
  region  = var.region
}

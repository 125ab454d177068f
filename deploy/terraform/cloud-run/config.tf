# moat.yaml for the seed's two doors, rendered by ./config (a module without
# providers, so CI renders it with the same inputs and runs moat check on it).
module "config" {
  source                = "./config"
  staff_host            = var.staff_host
  staff_members         = var.staff_members
  staff_hosted_domain   = var.staff_hosted_domain
  partner_host          = var.partner_host
  partner_group         = var.partner_group
  partner_source_ranges = var.partner_source_ranges
  google_client_id      = var.google_client_id
  port                  = local.moat_port
  database_host         = google_sql_database_instance.moat.private_ip_address
  redis_host            = var.memorystore ? google_redis_instance.counters[0].host : ""
  # Whose X-Forwarded-For moat believes: Cloud Run's front end, the
  # container's link-local peer, and the load balancer, which appends
  # "<client>, <its forwarding rule's address>". The client is the
  # right-most address that is neither, so src_ip_ranges sees the customer's
  # VPN address and a client cannot forge one.
  trusted_proxies = ["169.254.0.0/16", "${google_compute_global_address.lb.address}/32"]
}

domain = "reports.example.com"

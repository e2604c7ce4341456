"""Send-Mail's domain: pure Python, no Azure Functions imports."""

"""Read-only fact sources a desk can use as they are or copy: lookups that establish facts from a local
file, for a domain's `[fact_source] python = "edge_agent.lookups.<module>:facts"`."""

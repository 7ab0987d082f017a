"""The PostgreSQL backend of the project (ENGINE "config.postgresql"): Django's, with the
per-request connection health check that needs no round trip (base.py)."""

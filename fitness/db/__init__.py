"""The project's PostgreSQL backend: Django's, with a cheaper connection health check (base.py)."""

"""Through a real PgBouncer: the launcher (server.py), fixtures and tests."""

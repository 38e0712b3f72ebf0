"""Durable jobs: every generation is a row in a job store (SQLite by default, any SQLAlchemy URL in server
mode), scheduled fairly per architecture and per owner, with its provenance, and kept as history."""

"""Alembic environment: run by ``jobs.store.migrate`` with the app's own connection (no alembic.ini needed)."""

from alembic import context

from jobs.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()

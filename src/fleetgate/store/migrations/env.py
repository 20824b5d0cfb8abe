"""Alembic environment: migrations run on the connection `fleetgate.store.migrate` passes in, inside its transaction."""

from alembic import context

connection = context.config.attributes["connection"]
# SQLite and PostgreSQL both take DDL inside a transaction: a migration commits whole or not at all.
context.configure(connection=connection, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()

"""Alembic migrations of a region's catalog; `fleetgate.store.migrate` runs them (the one place tables are made)."""

"""Alembic's environment for the ledger: it runs on the connection shared.ledger_migrations
opened (inside that caller's transaction), never from an alembic.ini URL."""

from alembic import context

from shared.ledger_schema import VERSION_TABLE, metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the ledger's migrations through shared.ledger_migrations")

context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    # SQLite alters a table by copying it: drafted revisions use batch_alter_table.
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()

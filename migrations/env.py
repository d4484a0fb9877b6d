"""Alembic environment: runs on the engine Spyglass hands over, or on SPYGLASS_DATABASE_URL."""

from alembic import context

from spyglass.search.catalog.db import create_db_engine
from spyglass.search.catalog.schema import Base, made_by_hand
from spyglass.search.settings import Settings

config = context.config


def run_migrations() -> None:
    """Migrate the catalog online, in one transaction."""
    engine = config.attributes.get("engine")
    if engine is None:
        # Run by the plain `alembic` command: the URL comes from the settings, like everything else.
        engine = create_db_engine(config.get_main_option("sqlalchemy.url") or Settings.from_env().db_url)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata,
                          render_as_batch=connection.dialect.name == "sqlite", compare_type=True,
                          include_name=lambda name, _type, _parents: not made_by_hand(name))
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations()

"""Alembic environment: runs migrations against the URL the caller configured."""

from alembic import context
from sqlmodel import SQLModel

import store.models  # noqa: F401  (registers the tables)
from store.db import make_engine

target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    config = context.config
    engine = make_engine(config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()

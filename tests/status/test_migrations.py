"""The migrations build exactly the schema the models declare, on both databases: a column,
index or constraint added to a model without its migration (or the other way round) would only
show on a deployed database."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from status.db import Base, load_models
from tests.conftest import on_both_databases


@on_both_databases
def test_the_migrated_schema_is_the_models_schema(database):
    load_models()
    with database.engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert differences == []

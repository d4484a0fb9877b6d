"""The SQL catalog: tables, engines, migrations, the queries both sides read, and the indexer lock."""

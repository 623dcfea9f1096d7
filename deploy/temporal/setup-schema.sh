#!/usr/bin/env bash
# Creates or upgrades Temporal's two PostgreSQL schemas (persistence and visibility) to the versions
# this admin-tools image ships; safe to run at every `docker compose up`. Run by the one-shot
# `temporal-schema` service before the Temporal server starts.
set -euo pipefail

SCHEMA_ROOT=/etc/temporal/schema/postgresql/v12
sql() {
  temporal-sql-tool --plugin postgres12 --endpoint temporal-db --port 5432 --user temporal --password "$SQL_PASSWORD" "$@"
}

for db in temporal:temporal temporal_visibility:visibility; do
  name=${db%%:*}
  dir=${db##*:}
  # `create` fails when the database exists (a restart): that is fine, the schema steps below are
  # what must succeed.
  sql --database "$name" create || echo "database $name exists"
  sql --database "$name" setup-schema -v 0.0
  sql --database "$name" update-schema -d "$SCHEMA_ROOT/$dir/versioned"
done
echo "Temporal schemas are current"

#!/bin/sh
# Runs once, at the timescaledb container's first start (docker-entrypoint-initdb.d):
# creates Grafana's read-only role with the password from GRAFANA_DB_PASSWORD.
set -eu
: "${GRAFANA_DB_PASSWORD:?GRAFANA_DB_PASSWORD must be set for the grafana_reader role}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v grafana_password="$GRAFANA_DB_PASSWORD" -v owner="$POSTGRES_USER" \
     -f /docker-entrypoint-initdb.d/grafana-reader.sql.in

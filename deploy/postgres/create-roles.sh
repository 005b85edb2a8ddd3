#!/bin/sh
# The compose stack's Postgres runs this at its first start (docker-entrypoint-initdb.d): roles.sql with each
# service's password from the environment (deploy/env.example). Any missing one stops the initialisation.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v identity_password="$IDENTITY_DATABASE_PASSWORD" \
  -v devices_password="$DEVICES_DATABASE_PASSWORD" \
  -v readings_password="$READINGS_DATABASE_PASSWORD" \
  -v reservations_password="$RESERVATIONS_DATABASE_PASSWORD" \
  -v certificates_password="$CERTIFICATES_DATABASE_PASSWORD" \
  -v charger_gateway_password="$CHARGER_GATEWAY_DATABASE_PASSWORD" \
  -f /opt/opendrec/roles.sql

-- Least privilege (issue 12): one login role per service, owning its own database and nothing else; no role can
-- connect to another service's database (CONNECT revoked from PUBLIC), and none is a superuser or may create
-- databases or roles. The gateway and the console have no database. Run once, as an administrator, with psql:
--   psql "$ADMIN_URL" -v ON_ERROR_STOP=1 -v identity_password=... -v devices_password=... \
--        -v readings_password=... -v reservations_password=... -v certificates_password=... \
--        -v charger_gateway_password=... -f deploy/postgres/roles.sql
-- (compose runs it at the database's first start: create-roles.sh). Each service's DATABASE_URL then names its own
-- role and database: postgresql://opendrec_<service>:<password>@<host>:5432/opendrec_<service> (service names with
-- underscores: opendrec_charger_gateway). The service finds its database there and migrates it as its owner.

CREATE ROLE opendrec_identity LOGIN PASSWORD :'identity_password' NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
CREATE DATABASE opendrec_identity OWNER opendrec_identity;
REVOKE ALL ON DATABASE opendrec_identity FROM PUBLIC;

CREATE ROLE opendrec_devices LOGIN PASSWORD :'devices_password' NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
CREATE DATABASE opendrec_devices OWNER opendrec_devices;
REVOKE ALL ON DATABASE opendrec_devices FROM PUBLIC;

CREATE ROLE opendrec_readings LOGIN PASSWORD :'readings_password' NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
CREATE DATABASE opendrec_readings OWNER opendrec_readings;
REVOKE ALL ON DATABASE opendrec_readings FROM PUBLIC;

CREATE ROLE opendrec_reservations LOGIN PASSWORD :'reservations_password' NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
CREATE DATABASE opendrec_reservations OWNER opendrec_reservations;
REVOKE ALL ON DATABASE opendrec_reservations FROM PUBLIC;

CREATE ROLE opendrec_certificates LOGIN PASSWORD :'certificates_password' NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
CREATE DATABASE opendrec_certificates OWNER opendrec_certificates;
REVOKE ALL ON DATABASE opendrec_certificates FROM PUBLIC;

CREATE ROLE opendrec_charger_gateway LOGIN PASSWORD :'charger_gateway_password' NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
CREATE DATABASE opendrec_charger_gateway OWNER opendrec_charger_gateway;
REVOKE ALL ON DATABASE opendrec_charger_gateway FROM PUBLIC;

#!/bin/sh
# Run once by the compose stack's `kafka-users` (in the broker's network namespace: the broker's loopback listener is
# reachable from there only): a SCRAM-SHA-512 user per process, each with its password from the environment
# (deploy/env.example). Idempotent: setting a user's credential again replaces it.
set -eu
add() {
  /opt/kafka/bin/kafka-configs.sh --bootstrap-server 127.0.0.1:9092 --alter --entity-type users --entity-name "$1" \
    --add-config "SCRAM-SHA-512=[iterations=8192,password=$2]"
}
add opendrec-identity "$IDENTITY_KAFKA_PASSWORD"
add opendrec-devices "$DEVICES_KAFKA_PASSWORD"
add opendrec-readings "$READINGS_KAFKA_PASSWORD"
add opendrec-reservations "$RESERVATIONS_KAFKA_PASSWORD"
add opendrec-certificates "$CERTIFICATES_KAFKA_PASSWORD"
add opendrec-charger-gateway "$CHARGER_GATEWAY_KAFKA_PASSWORD"
add opendrec-gateway "$GATEWAY_KAFKA_PASSWORD"

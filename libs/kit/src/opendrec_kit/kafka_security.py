"""Kafka security: every Kafka client the kit makes (the services' broker, topic admin, lag reader, revocation
follower, broker-epoch marker, DLQ tools) authenticates and encrypts the same way, from one set of settings per
process (`settings.KafkaSecuritySettings`: KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_*). Issue 12: in
production a Kafka user per service (SCRAM) over TLS.

A module of its own, importing nothing of the kit but its settings, so that every module making a client can import
it without an import cycle.
"""

from __future__ import annotations

import functools
import ssl
from typing import Any

from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from .settings import KafkaSecuritySettings


@functools.cache
def kafka_security() -> KafkaSecuritySettings:
    """This process's Kafka security settings, read from the environment once."""
    return KafkaSecuritySettings()


def _ssl_context(security: KafkaSecuritySettings) -> ssl.SSLContext | None:
    if not security.tls:
        return None
    # Certificates and host names verified (create_default_context's defaults), against the given CA or the system's.
    context = ssl.create_default_context(cafile=security.kafka_ssl_cafile or None)
    if security.kafka_ssl_certfile:
        context.load_cert_chain(security.kafka_ssl_certfile, security.kafka_ssl_keyfile)
    return context


def client_options(security: KafkaSecuritySettings | None = None) -> dict[str, Any]:
    """Keyword arguments for an aiokafka producer, consumer or admin client: protocol, SASL and TLS."""
    security = security or kafka_security()
    options: dict[str, Any] = {"security_protocol": security.kafka_security_protocol}
    if security.tls:
        options["ssl_context"] = _ssl_context(security)
    if security.sasl:
        options.update(
            sasl_mechanism=security.kafka_sasl_mechanism,
            sasl_plain_username=security.kafka_sasl_username,
            sasl_plain_password=security.kafka_sasl_password.get_secret_value(),
        )
    return options


def broker_security(security: KafkaSecuritySettings | None = None) -> BaseSecurity | None:
    """The same settings as FastStream's KafkaBroker takes them (it hands them on to its aiokafka clients)."""
    security = security or kafka_security()
    context = _ssl_context(security)
    if security.sasl:
        mechanism = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}
        user, password = security.kafka_sasl_username, security.kafka_sasl_password.get_secret_value()
        return mechanism[security.kafka_sasl_mechanism](user, password, ssl_context=context, use_ssl=security.tls)
    if security.tls:
        return BaseSecurity(ssl_context=context, use_ssl=True)
    return None

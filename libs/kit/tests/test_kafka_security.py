"""Kafka security (issue 12): KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_* reach every Kafka client the kit
makes (the services' broker, topic admin, lag reader, revocation follower, broker-epoch marker, DLQ tools), and
settings that cannot work are refused at start."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from opendrec_kit import auth, dlq, kafka_security, messaging, outbox
from opendrec_kit.metrics import LagReader
from opendrec_kit.settings import KafkaSecuritySettings, ServiceSettings


def write_ca(directory: Path) -> Path:
    """A self-signed CA certificate, as an operator's cluster CA file."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "opendrec test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = directory / "ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture
def scram_over_tls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """This process's environment as a production pod's: SCRAM-SHA-512 over TLS with the cluster's CA."""
    ca = write_ca(tmp_path)
    for name, value in {
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "opendrec-readings",
        "KAFKA_SASL_PASSWORD": "s3cret",
        "KAFKA_SSL_CAFILE": str(ca),
    }.items():
        monkeypatch.setenv(name, value)
    kafka_security.kafka_security.cache_clear()
    yield ca
    kafka_security.kafka_security.cache_clear()


def assert_secured(options: dict[str, Any]) -> None:
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("opendrec-readings", "s3cret")
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "opendrec test CA"),),)]


class Made(Exception):
    """Raised by a recording client class instead of connecting."""


def recorder(made: list[dict[str, Any]]) -> type:
    class Client:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            made.append(kwargs)
            raise Made

    return Client


async def test_every_kafka_client_the_kit_makes_gets_the_security_settings(
    scram_over_tls: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[dict[str, Any]] = []
    client = recorder(made)
    for module, names in {
        messaging: ["AIOKafkaAdminClient"],
        auth: ["AIOKafkaConsumer"],
        outbox: ["AIOKafkaAdminClient", "AIOKafkaConsumer"],
        dlq: ["AIOKafkaAdminClient", "AIOKafkaConsumer", "AIOKafkaProducer"],
    }.items():
        for name in names:
            monkeypatch.setattr(module, name, client)
    import aiokafka.admin

    monkeypatch.setattr(aiokafka.admin, "AIOKafkaAdminClient", client)  # the lag reader imports it when it runs

    bootstrap = "kafka.example:9093"
    follower = auth.RevocationFollower(bootstrap, verifier=None)  # type: ignore[arg-type]  # never reached
    letter = dlq.DeadLetter(
        topic="read.ingested.dlq", partition=0, offset=0, original_topic="read.ingested", event_id=None,
        event_type=None, error_type="ValueError", error_message="", attempts="3", key=None, value=b"{}",
    )  # fmt: skip
    attempts = [
        messaging.ensure_topics(bootstrap, ["read.ingested"], 3),
        messaging.partition_counts(bootstrap, ["read.ingested"]),
        LagReader(bootstrap).read({"certificates.read.ingested": "read.ingested"}),
        follower.step(),
        follower.catch_up(),
        outbox.BrokerEpoch(bootstrap, 3, 1)._first(),
        dlq.dead_letters(bootstrap),
        dlq.replay(bootstrap, [letter]),
    ]
    for attempt in attempts:
        with pytest.raises(Made):
            await attempt
    assert len(made) == len(attempts)
    for options in made:
        assert_secured(options)

    broker = messaging.make_broker(ServiceSettings(service_name="readings", kafka_bootstrap_servers=bootstrap))
    assert_secured(broker._connection_kwargs)  # its producer
    (config,) = broker.config.configs
    assert_secured(config.builder.keywords)  # its consumers


def test_plaintext_by_default_as_the_embedded_broker_speaks(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD", "KAFKA_SSL_CAFILE"):
        monkeypatch.delenv(name, raising=False)
    assert kafka_security.client_options(KafkaSecuritySettings()) == {"security_protocol": "PLAINTEXT"}
    assert kafka_security.broker_security(KafkaSecuritySettings()) is None


@pytest.mark.parametrize(
    ("settings", "refused"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "KAFKA_SASL_USERNAME"),
        ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_username": "u"}, "KAFKA_SASL_USERNAME"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_certfile": "c.pem"}, "go together"),
        ({"kafka_ssl_cafile": "ca.pem"}, "need KAFKA_SECURITY_PROTOCOL"),
        ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "GSSAPI"}, "kafka_sasl_mechanism"),
    ],
)
def test_settings_that_cannot_work_are_refused(monkeypatch: pytest.MonkeyPatch, settings, refused) -> None:
    for name in ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD", "KAFKA_SSL_CAFILE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValidationError, match=refused):
        KafkaSecuritySettings(**settings)


def test_tls_without_sasl_and_a_client_certificate(tmp_path: Path) -> None:
    """Mutual TLS: the client's certificate and key are loaded into the context."""
    ca = write_ca(tmp_path)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "opendrec-devices")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "client.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "client.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    security = KafkaSecuritySettings(
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=str(ca),
        kafka_ssl_certfile=str(tmp_path / "client.pem"),
        kafka_ssl_keyfile=str(tmp_path / "client.key"),
    )
    options = kafka_security.client_options(security)
    assert options["security_protocol"] == "SSL" and "sasl_mechanism" not in options
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    broker = kafka_security.broker_security(security)
    assert broker is not None and broker.use_ssl

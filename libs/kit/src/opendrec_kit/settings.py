"""Settings from the environment, the same names in every process.

`CoreSettings` is what every process reads, the gateway included (environment, HTTP, worker
count, identity's URL and token checks, tracing, logs); `ServiceSettings` adds what a service
with a database and a broker needs. Outside dev and test, a secret still holding its
documented dev default is refused: production must never run on a value printed in the README.
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET_PREFIX = "dev-only-"


def _plain(value: object) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return str(value or "")


class CoreSettings(BaseSettings):
    """What every OpenDREC process reads: no database, no broker."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    # Fields listed here must not keep a dev default outside dev/test.
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ()

    environment: Literal["dev", "test", "production"] = "dev"
    service_name: str = ""
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    # Processes serving on the one port (uvicorn workers). In a service each runs its own
    # subscribers, sharing the consumer groups; everything a service does is replica-safe (inbox,
    # outbox relay under an advisory lock, jobs claimed with locks). Each has its own token cache.
    http_workers: int = Field(default=1, ge=1, le=64)

    # Access tokens: identity's keys from IDENTITY_URL/.well-known/jwks.json; aud/iss checked
    # (an empty JWT_AUDIENCE / JWT_ISSUER disables that check).
    identity_url: str = "http://127.0.0.1:8101"
    jwt_audience: str = "opendrec"
    jwt_issuer: str = "opendrec-identity"
    jwt_leeway_s: float = Field(default=0.0, ge=0)
    token_cache_size: int = Field(default=10_000, ge=1)  # verified tokens kept (LRU) until they expire
    jwks_ttl_s: float = 300.0
    jwks_min_refresh_interval_s: float = 5.0  # refetch on an unknown kid at most this often

    traces_file: str | None = None
    otel_exporter_otlp_endpoint: str | None = None
    log_level: str = "INFO"

    @property
    def jwks_url(self) -> str:
        return f"{self.identity_url.rstrip('/')}/.well-known/jwks.json"

    @model_validator(mode="after")
    def _refuse_dev_secrets(self) -> CoreSettings:
        if self.environment in ("dev", "test"):
            return self
        weak = [name for name in self.SECRET_FIELDS if _plain(getattr(self, name)).startswith(DEV_SECRET_PREFIX)]
        if weak:
            raise ValueError(
                f"{', '.join(n.upper() for n in weak)} still hold the dev default; "
                f"set real secrets when ENVIRONMENT={self.environment}"
            )
        return self


class ServiceSettings(CoreSettings):
    """A service: the core settings plus its database, its broker and its outbox."""

    database_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    database_name_prefix: str = "opendrec_"
    database_pool_min: int = 1
    database_pool_max: int = 10
    # Every pool's timeouts (opendrec_kit.db): waiting for a connection, one statement (lock waits included), a
    # transaction idle on its client; past them the request is answered 503. 0 for the last two: none.
    # Migrations run on their own connections, without them.
    database_acquire_timeout_s: float = Field(default=15.0, gt=0, le=600)
    database_statement_timeout_s: float = Field(default=60.0, ge=0, le=3600)
    database_idle_in_transaction_timeout_s: float = Field(default=120.0, ge=0, le=3600)

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_topic_partitions: int = Field(default=3, ge=1)
    kafka_replication_factor: int = Field(default=1, ge=1)
    # Kafka defaults are 10 s / 3 s; dev and tests set 2000/500 (a group join otherwise takes ~5 s).
    kafka_session_timeout_ms: int = 10_000
    kafka_heartbeat_interval_ms: int = 3_000
    # How long the producer waits for more messages to the same broker before sending a request: the events of a
    # group of single reads (the relay hands them over together) go in one request instead of several. Issue 16,
    # bench/readings/bench_single_reads.py: readings 0.617-0.633 -> 0.574-0.591 ms CPU a read, Tansu 0.096-0.106 ->
    # 0.078-0.091. Events reach consumers at most this much later.
    kafka_linger_ms: int = Field(default=2, ge=0, le=1000)
    # Prepended to consumer group names: tests and side-by-side stacks on one broker keep their own offsets.
    kafka_group_prefix: str = ""
    consumer_max_attempts: int = Field(default=3, ge=1)
    consumer_retry_backoff_ms: int = Field(default=200, ge=0)

    outbox_poll_interval_s: float = 1.0
    outbox_batch_size: int = 500
    # Published events are kept this long, to be published again if the broker loses its data (detected by its epoch
    # marker, checked every BROKER_EPOCH_CHECK_S); longer than the longest broker outage you want to survive.
    outbox_retention_s: float = Field(default=6 * 3600.0, ge=0)
    broker_epoch_check_s: float = Field(default=30.0, gt=0)
    # How often a producer of watermarked topics (opendrec_kit.watermarks) writes its watermark: how far behind the
    # clock its consumers' knowledge may lag when nothing is late.
    watermark_interval_s: float = Field(default=1.0, gt=0)

    # Read-your-writes (opendrec_kit.owners): the services that own what this one keeps read models of, asked
    # on a miss; how long one question may take and how many may be open at once in a process.
    devices_url: str = "http://127.0.0.1:8102"
    reservations_url: str = "http://127.0.0.1:8104"
    owner_timeout_s: float = Field(default=10.0, gt=0, le=30)
    owner_concurrency: int = Field(default=16, ge=1, le=1000)

    @property
    def database_name(self) -> str:
        return f"{self.database_name_prefix}{self.service_name.replace('-', '_')}"

    @model_validator(mode="after")
    def _check_prefix(self) -> ServiceSettings:
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", self.database_name_prefix):
            raise ValueError("DATABASE_NAME_PREFIX may hold only lower-case letters, digits and _")
        return self


class KafkaSecuritySettings(BaseSettings):
    """How every Kafka client of a process (broker, admin, lag reader, revocations, epoch marker, DLQ tools)
    authenticates and encrypts: one set per process, from the environment (issue 12, least privilege: a Kafka user
    per service, SCRAM over TLS in production). PLAINTEXT by default, as the embedded dev broker speaks."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_sasl_username: str = Field(default="", max_length=256)
    kafka_sasl_password: SecretStr = SecretStr("")
    # TLS: the CA that signed the brokers' certificates (empty: the system's), and a client certificate and key
    # for brokers that also ask for one (mutual TLS).
    kafka_ssl_cafile: str = Field(default="", max_length=1024)
    kafka_ssl_certfile: str = Field(default="", max_length=1024)
    kafka_ssl_keyfile: str = Field(default="", max_length=1024)

    @property
    def sasl(self) -> bool:
        return self.kafka_security_protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.kafka_security_protocol in ("SSL", "SASL_SSL")

    @model_validator(mode="after")
    def _check(self) -> KafkaSecuritySettings:
        if self.sasl and not (self.kafka_sasl_username and self.kafka_sasl_password.get_secret_value()):
            raise ValueError(
                f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs KAFKA_SASL_USERNAME and _PASSWORD"
            )
        if bool(self.kafka_ssl_certfile) != bool(self.kafka_ssl_keyfile):
            raise ValueError("KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together")
        if not self.tls and (self.kafka_ssl_cafile or self.kafka_ssl_certfile):
            raise ValueError("KAFKA_SSL_* files need KAFKA_SECURITY_PROTOCOL SSL or SASL_SSL")
        return self

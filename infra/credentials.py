"""How every Kafka client we build authenticates: one function from settings to options.

``broker_credentials(settings, client)`` turns ``DISPATCHWIRE_KAFKA_SECURITY_PROTOCOL``,
``_SASL_MECHANISM``, ``_SASL_USERNAME``, ``_SASL_PASSWORD`` and ``_SSL_CAFILE`` into the
keyword arguments of one client library, so a producer is built as
``AIOKafkaProducer(bootstrap_servers=..., **broker_credentials(settings, "aiokafka"))``.
The three libraries spell the same thing three ways (aiokafka wants an ``SSLContext``,
kafka-python a CA file path, Faust a ``Credentials`` object), which is why this is one room.

``refused_credentials(settings, exc)`` tells a refused login from an unreachable broker
and turns it into a ``ConfigurationError`` that names the settings to fix.
"""

from __future__ import annotations

import asyncio
import ssl
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from aiokafka.errors import KafkaError as AioKafkaError

from dispatchwire.errors import ConfigurationError
from dispatchwire.settings import Settings

Client = Literal["aiokafka", "kafka-python", "faust"]

USERNAME_ENV = "DISPATCHWIRE_KAFKA_SASL_USERNAME"
PASSWORD_ENV = "DISPATCHWIRE_KAFKA_SASL_PASSWORD"  # noqa: S105 - the name of the variable


def uses_sasl(settings: Settings) -> bool:
    return settings.kafka_security_protocol.startswith("SASL_")


def uses_tls(settings: Settings) -> bool:
    return settings.kafka_security_protocol in ("SSL", "SASL_SSL")


def sasl_login(settings: Settings) -> tuple[str, str]:
    """The SASL username and password, refusing a SASL protocol without them."""
    password = settings.kafka_sasl_password
    missing = [
        env
        for env, value in ((USERNAME_ENV, settings.kafka_sasl_username), (PASSWORD_ENV, password))
        if not value
    ]
    if missing or password is None or settings.kafka_sasl_username is None:
        raise ConfigurationError(
            f"DISPATCHWIRE_KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol} needs "
            f"{' and '.join(missing)}"
        )
    return settings.kafka_sasl_username, password.get_secret_value()


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """A client TLS context trusting ``kafka_ssl_cafile`` (the system CAs when unset)."""
    cafile = settings.kafka_ssl_cafile
    if cafile is not None and not cafile.is_file():
        raise ConfigurationError(f"DISPATCHWIRE_KAFKA_SSL_CAFILE: no such file {cafile}")
    return ssl.create_default_context(cafile=str(cafile) if cafile else None)


def broker_credentials(settings: Settings, client: Client) -> dict[str, Any]:
    """Keyword arguments that make a ``client`` connect with the configured security.

    ``aiokafka``: for ``AIOKafkaProducer`` / ``AIOKafkaConsumer`` / ``AIOKafkaAdminClient``.
    ``kafka-python``: for ``KafkaProducer`` / ``KafkaConsumer`` / ``KafkaAdminClient``.
    ``faust``: for ``faust.App(...)`` (``broker_credentials``; Faust builds its aiokafka
    clients from it). With the default PLAINTEXT every client gets what it had before.
    """
    protocol = settings.kafka_security_protocol
    if client == "faust":
        return _faust_credentials(settings)
    if client not in ("aiokafka", "kafka-python"):
        raise ValueError(f"unknown Kafka client library {client!r}")
    options: dict[str, Any] = {"security_protocol": protocol}
    if uses_sasl(settings):
        username, password = sasl_login(settings)
        options.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=username,
            sasl_plain_password=password,
        )
    if uses_tls(settings):
        options["ssl_context"] = ssl_context(settings)
    return options


def _faust_credentials(settings: Settings) -> dict[str, Any]:
    from faust.auth import SASLCredentials, SSLCredentials

    if uses_sasl(settings):
        username, password = sasl_login(settings)
        context = ssl_context(settings) if uses_tls(settings) else None
        return {
            "broker_credentials": SASLCredentials(
                username=username,
                password=password,
                ssl_context=context,
                mechanism=settings.kafka_sasl_mechanism,
            )
        }
    if uses_tls(settings):
        return {"broker_credentials": SSLCredentials(ssl_context(settings))}
    return {}


def refused_credentials(settings: Settings, exc: BaseException) -> ConfigurationError | None:
    """Our error if ``exc`` (a client failing to connect) means the broker refused the login.

    Neither client says so itself: aiokafka logs the broker's ``SaslAuthenticationFailed``
    and raises a bare "Unable to bootstrap", and kafka-python 3.0 loses the broker's answer
    (the broker closes the socket right after it) and retries until its bootstrap timeout.
    So unless the error already is an authentication failure, this asks the broker once
    itself, with one aiokafka connection and the same login, which reports the refusal.
    """
    from aiokafka.errors import AuthenticationFailedError as _AioAuthFailed
    from aiokafka.errors import SaslAuthenticationFailed as _AioSaslFailed
    from kafka.errors import SaslAuthenticationFailedError as _SaslFailed

    if not uses_sasl(settings):
        return None
    refusals = (_SaslFailed, _AioSaslFailed, _AioAuthFailed)
    seen: BaseException | None = exc
    while seen is not None and not isinstance(seen, refusals):
        seen = seen.__cause__ or seen.__context__
    if seen is None and not _login_refused(settings):
        return None
    return ConfigurationError(
        f"Kafka at {settings.kafka_bootstrap} refused the SASL login "
        f"({settings.kafka_sasl_mechanism}) of {USERNAME_ENV}={settings.kafka_sasl_username!r}: "
        f"check {USERNAME_ENV} and {PASSWORD_ENV}"
    )


def _login_refused(settings: Settings, timeout_s: float = 10.0) -> bool:
    """True if the first bootstrap broker answers our login with an authentication error."""
    from aiokafka.conn import create_conn
    from aiokafka.errors import AuthenticationFailedError as _AioAuthFailed
    from aiokafka.errors import SaslAuthenticationFailed as _AioSaslFailed

    host, _, port = settings.kafka_bootstrap.split(",")[0].strip().rpartition(":")

    async def probe() -> bool:
        try:
            conn = await asyncio.wait_for(
                create_conn(
                    host,
                    int(port),
                    request_timeout_ms=int(timeout_s * 1000),
                    **broker_credentials(settings, "aiokafka"),
                ),
                timeout_s,
            )
        except (_AioSaslFailed, _AioAuthFailed):
            return True
        except (OSError, TimeoutError, AioKafkaError):
            return False
        conn.close()
        return False

    # its own thread and loop: callers may be inside a running loop (aiokafka) or not
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, probe()).result()

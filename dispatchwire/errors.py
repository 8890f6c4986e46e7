"""The one exception family of dispatchwire.

    DispatchwireError
     +-- ConfigurationError      a setting is missing or unsafe (names the env var)
     +-- KafkaError              the broker cannot be reached or refused a request
     |    +-- KafkaUnavailable   nothing answers at the bootstrap address
     +-- KafkaDistributionError  the Kafka server artifacts could not be fetched
     +-- BrokerStartError        the local broker did not come up (carries the log tail)
     +-- ValidationFailed        user input is invalid (carries field-level reasons)
     +-- SinkError               the DuckDB sink or a snapshot failed

Library errors (aiokafka, kafka-python, DuckDB) are turned into these where they enter
our code, so callers catch one family.
"""

from __future__ import annotations


class DispatchwireError(Exception):
    """Root of every error dispatchwire raises on purpose."""


class ConfigurationError(DispatchwireError):
    pass


class KafkaError(DispatchwireError):
    pass


class KafkaUnavailable(KafkaError):
    def __init__(self, bootstrap: str, detail: str = "") -> None:
        msg = (
            f"Kafka is not reachable at {bootstrap}. Start it with `dispatchwire kafka up` "
            "(or `make kafka-up`), or point DISPATCHWIRE_KAFKA_BOOTSTRAP at a running broker."
        )
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)
        self.bootstrap = bootstrap


class KafkaDistributionError(DispatchwireError):
    pass


class BrokerStartError(KafkaError):
    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message + (f"\n--- broker log tail ---\n{log_tail}" if log_tail else ""))
        self.log_tail = log_tail


class ValidationFailed(DispatchwireError):
    """Invalid input; ``errors`` is a list of ``{"field": ..., "reason": ...}``."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e['field']}: {e['reason']}" for e in errors))


class SinkError(DispatchwireError):
    pass

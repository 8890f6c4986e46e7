"""dispatchwire: a real-time emergency-response pipeline on Kafka.

This package holds what every part shares: settings, the error tree, logging and the CLI.
The parts themselves live in the top-level packages ``schemas``, ``streams``, ``api``,
``views`` and ``infra``.
"""

__version__ = "0.1.0"

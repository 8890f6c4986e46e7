"""The roof: the ``dispatchwire`` command, the one package that knows every part.

``cli.main`` builds the command line from each part's ``register(subparsers)`` (``infra``,
``streams``, ``analytics``, ``api``, and the two commands that belong to no single part:
``cli.schemas_export`` and ``cli.run``). The ground it stands on, ``dispatchwire`` (settings,
errors, logs), imports nothing of ours; ``tests/test_dependencies.py`` holds both to that.
"""

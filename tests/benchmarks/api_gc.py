"""The live API as ``dispatchwire api`` serves it, plus ``gc.freeze()`` after start-up.

Not part of the product: it measures what freezing the start-up heap (imports, the app,
the road network) would buy the API, so the lead can decide on the change in ``api/``.
Settings come from the ``DISPATCHWIRE_*`` environment, as for ``dispatchwire api``.
"""

from __future__ import annotations

import gc

from api.server import build_server
from dispatchwire.settings import Settings
from infra.topics import ensure_topics


def main() -> None:
    settings = Settings()
    ensure_topics(settings)
    server = build_server(settings)
    gc.collect()
    gc.freeze()
    server.run()


if __name__ == "__main__":
    main()

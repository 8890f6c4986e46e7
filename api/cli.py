"""``dispatchwire api``: serve the live API with uvicorn."""

from __future__ import annotations

import argparse
import logging

from dispatchwire.errors import KafkaUnavailable
from dispatchwire.settings import DEV_TOKENS, Settings

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "api",
        help="serve the live API (HTTP commands, SSE /api/stream, /ws) with uvicorn",
        description="Serve the live API. Settings from DISPATCHWIRE_* (API_HOST, API_PORT, "
        "AUTHORITY_TOKEN, UNIT_TOKEN, REPORTER_TOKEN, CORS_ORIGINS, ...).",
    )
    parser.add_argument("--host", default=None, help="bind address (DISPATCHWIRE_API_HOST)")
    parser.add_argument("--port", type=int, default=None, help="port (DISPATCHWIRE_API_PORT)")
    parser.set_defaults(func=run_api)

    mint = sub.add_parser(
        "unit-token",
        help="print the bearer token of one unit (it may change that unit only)",
        description="Print the token that lets a unit change its own status (and read the "
        "live feed). Signed with DISPATCHWIRE_UNIT_SIGNING_KEY, else a key derived from "
        "DISPATCHWIRE_AUTHORITY_TOKEN: changing either invalidates every unit token.",
    )
    mint.add_argument("unit_id", help="the unit's id, e.g. hki-ne-amb-1")
    mint.set_defaults(func=print_unit_token)


def print_unit_token(settings: Settings, args: argparse.Namespace) -> int:
    from api.auth import unit_token_for

    print(unit_token_for(settings, args.unit_id))
    return 0


def run_api(settings: Settings, args: argparse.Namespace) -> int:
    from api.server import build_server
    from infra.topics import ensure_topics

    try:
        ensure_topics(settings)
    except KafkaUnavailable as exc:
        log.warning("%s -- serving anyway; commands answer 503 until it is up", exc)
    server = build_server(settings, args.host, args.port, tune_gc=True)
    host, port = server.config.host, server.config.port
    print(f"dispatchwire api on http://{host}:{port}  (stream: /api/stream, docs: /openapi.json)")
    if settings.mode == "dev":
        print("dev mode tokens (the defaults are refused outside DISPATCHWIRE_MODE=dev):")
        for name, default in DEV_TOKENS.items():
            token = getattr(settings, name).get_secret_value()
            shown = token if token == default else "(set, not shown)"  # never a real secret
            print(f"  {name.removesuffix('_token'):9} {shown}")
    server.run()
    return 0

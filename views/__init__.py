"""The browser pages: Reporter, tracking, Dispatch dashboard, Units map and Replay.

``routes(settings)`` is the one entry point; the API mounts what it returns.
"""

from views.pages import routes

__all__ = ["routes"]

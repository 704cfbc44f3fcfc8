"""Staff-facing pages: agent workspace, KB operations, dashboard, problem ledger.

``setup(app)`` mounts the console on the application made by ``core.app.create_app``: sign-in
(login page, sessions, CSRF, brute-force limit) and the landing page, everything under
``/console``. Later console pages add their routes here and guard them with ``login_required``.
"""

from __future__ import annotations

from aiohttp import web

from .auth import STAFF, check_request, current_session, login_required, mount, staff_session


def setup(app: web.Application) -> None:
    """Mount the staff console's routes, its middleware and the staff store on ``app``."""
    mount(app)


__all__ = ["STAFF", "check_request", "current_session", "login_required", "setup",
           "staff_session"]

"""Staff-facing pages: agent workspace, KB operations, dashboard, problem ledger.

``setup(app)`` mounts the console on the application made by ``core.app.create_app``: sign-in
(login page, sessions, CSRF, brute-force limit) and the landing page, everything under
``/console``, the administrators' 用户管理 (``console.admin``), the agents' 坐席工作台
(``console.workspace_page``, its API ``console.workspace`` and socket
``console.workspace_socket``) and the supervisors' 班组监控 (``console.supervisor``). Later
console pages add their routes here and guard them with ``login_required``.
"""

from __future__ import annotations

from aiohttp import web

from . import admin, figures, supervisor, workspace, workspace_page, workspace_socket
from .auth import STAFF, check_request, current_session, login_required, mount, staff_session


def setup(app: web.Application) -> None:
    """Mount the staff console's routes, its middleware and the staff store on ``app``."""
    mount(app)
    admin.mount(app)
    workspace.mount(app)
    workspace_page.mount(app)
    workspace_socket.mount(app)
    supervisor.mount(app)
    figures.mount(app)


__all__ = ["STAFF", "check_request", "current_session", "login_required", "setup",
           "staff_session"]

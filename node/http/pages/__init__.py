"""The node's pages: a status page for operators and a results page per job.

Server-rendered (Jinja2) with a little plain JavaScript (no build step); images are
rendered as PNG from the node's own files. See :mod:`node.http.pages.routes`.
"""
from .login import login_router
from .routes import static_files, ui_router

__all__ = ["login_router", "static_files", "ui_router"]

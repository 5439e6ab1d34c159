"""``/login`` and ``/logout``: a browser trades the bearer token for a session cookie.

The form posts the token once; on success the answer sets the session cookie
(:mod:`node.http.sessions`: signed, ``HttpOnly``, ``SameSite=Strict``, ``Secure`` over HTTPS,
12 h) and redirects to the page first asked for. A wrong token gets the form again with
an error that repeats nothing typed, after a pause that slows guessing. Both posts must
come from the node's own pages (``Origin`` checked, see :mod:`node.http.auth`).
"""
from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from ..auth import AccessMode, BearerAuth, same_origin
from ..sessions import COOKIE_NAME

__all__ = ["login_router", "safe_next"]

_TEMPLATES = Path(__file__).parent / "templates"
_FAILED_LOGIN_PAUSE = 1.0
_MAX_FORM_BYTES = 8192


def safe_next(target: str | None) -> str:
    """Where to go after login: a path on this node, never another site (``/`` otherwise)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")) or any(
            c in target for c in "\r\n\\"):
        return "/"
    return target


def login_router(auth: BearerAuth, version: str) -> APIRouter:
    """The login and logout routes for ``auth``'s policy (open paths: they check what they need)."""
    templates = Jinja2Templates(directory=_TEMPLATES)
    router = APIRouter(include_in_schema=False)

    def form(request: Request, target: str, error: str | None = None, status: int = 200) -> HTMLResponse:
        return templates.TemplateResponse(request, "login.html", {
            "next": target, "error": error, "version": version, "closed": auth.mode == AccessMode.CLOSED,
        }, status_code=status, headers={"Cache-Control": "no-store"})

    @router.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next: str | None = None) -> Response:  # noqa: A002 (the query's name)
        target = safe_next(next)
        if auth.mode == AccessMode.ANONYMOUS:
            return RedirectResponse(target, status_code=303)
        return form(request, target)

    @router.post("/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        if not same_origin(request):
            return form(request, "/", "This form must be sent from the node's own login page.", 403)
        body = await request.body()
        fields = parse_qs(body[:_MAX_FORM_BYTES].decode("utf-8", "replace"), max_num_fields=4)
        target = safe_next((fields.get("next") or ["/"])[0])
        if auth.mode == AccessMode.ANONYMOUS:
            return RedirectResponse(target, status_code=303)
        if auth.sessions is None or not auth.token_matches((fields.get("token") or [""])[0]):
            await asyncio.sleep(_FAILED_LOGIN_PAUSE)
            return form(request, target, "That token is not valid.", 401)
        answer = RedirectResponse(target, status_code=303)
        answer.set_cookie(COOKIE_NAME, auth.sessions.issue(), max_age=int(auth.sessions.lifetime), path="/",
                          httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return answer

    @router.post("/logout")
    def logout(request: Request) -> Response:
        if not same_origin(request):
            return Response("cross-origin request refused", status_code=403, media_type="text/plain")
        if auth.sessions is not None:
            auth.sessions.revoke(request.cookies.get(COOKIE_NAME))
        answer = RedirectResponse("/login", status_code=303)
        answer.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict",
                             secure=request.url.scheme == "https")
        return answer

    return router

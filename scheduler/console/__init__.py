"""The web console at /ui: a static page (HTML, JavaScript, CSS shipped in this package, nothing from a CDN).

The page itself needs no token; every figure it shows comes from the protected
JSON API, which the page calls with `fetch` and `Authorization: Bearer <token>`
(the token is asked for once and kept in the tab's sessionStorage, never put in
a URL). Artifacts served by the API are fetched the same way and shown through
blob: URLs; presigned S3 URLs are used as they are.

    GET /ui                the page (routes inside it are #/jobs, #/job/<id>, #/sweeps, #/sweep/<name>)
    GET /ui/console.js     its script
    GET /ui/console.css    its style sheet
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from fastapi import FastAPI
from fastapi.responses import RedirectResponse, Response

#: the files of the console, by the name they are served under, with their Content-Type
ASSETS: dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}

#: everything the page loads comes from this origin; pictures may also come from presigned store URLs. A report
#: opened from a blob: URL keeps this policy, and its style sheet is a <style> element: hence 'unsafe-inline' styles
CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; "
       "img-src 'self' blob: data: http: https:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def asset(name: str) -> bytes:
    """One shipped file of the console (KeyError for any other name)."""
    if name not in ASSETS:
        raise KeyError(name)
    return resources.files(__name__).joinpath(name).read_bytes()


def _response(name: str) -> Response:
    headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
    if name == "index.html":
        headers["Content-Security-Policy"] = CSP
    return Response(asset(name), media_type=ASSETS[name], headers=headers)


def install_console(app: FastAPI, not_found: Any) -> None:
    """Add the console's routes (no token: the page holds no data). `not_found(name)` is the 404 to raise."""

    @app.get("/ui", include_in_schema=False)
    def console() -> Response:
        return _response("index.html")

    @app.get("/ui/", include_in_schema=False)
    def console_slash() -> Response:
        return RedirectResponse("../ui", status_code=307)  # relative: the page's own links resolve against /ui

    @app.get("/ui/{name}", include_in_schema=False)
    def console_asset(name: str) -> Response:
        if name not in ASSETS or name == "index.html":
            raise not_found(name)
        return _response(name)


__all__ = ["ASSETS", "CSP", "asset", "install_console"]

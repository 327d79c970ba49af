"""The OpenAPI document needs the token like every route but health and ready; no CDN-based docs pages."""

from __future__ import annotations

TOKEN = "unit-token"  # as in tests/unit/conftest.py


def test_openapi_json_needs_the_token(api):
    assert api.get("/openapi.json", headers={"Authorization": ""}).status_code == 401
    assert api.get("/openapi.json", headers={"Authorization": "Bearer nope"}).status_code == 401
    r = api.get("/openapi.json")  # the fixture's client sends the token
    assert r.status_code == 200 and "/v1/jobs" in r.json()["paths"] and "/openapi.json" not in r.json()["paths"]


def test_it_is_the_published_document(api):
    from scalespace.scheduler.api import openapi_document

    assert api.get("/openapi.json").json() == openapi_document()


def test_no_docs_pages_with_or_without_a_token(api):
    for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        for auth in ("", f"Bearer {TOKEN}"):
            r = api.get(path, headers={"Authorization": auth})
            assert r.status_code == 404 and "cdn" not in r.text.lower(), (path, auth, r.status_code)

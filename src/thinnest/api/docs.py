"""The API's front page ``/`` and its documentation, ``/docs`` (Swagger UI) and ``/redoc``.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so without the internet they are
blank. Here the same pages load the assets from ``/docs-assets``, which serves the copies the
``fastapi-offline`` package ships (Swagger UI's bundle and CSS, ReDoc's standalone bundle).
``/`` links the demo page (where it is on) and the documentation.
"""

from __future__ import annotations

import html
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_PATH = "/docs-assets"
#: The pages may load nothing from elsewhere: ReDoc's bundle, for one, shows a logo from its
#: vendor's CDN in its menu, which the browser now does not even request.
CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'"
)


def assets_dir() -> Path:
    """The directory of the installed Swagger UI and ReDoc assets."""
    return Path(str(files("fastapi_offline") / "static"))


def _root(request: Request) -> str:
    """The path the API is served under (a proxy's ``root_path``), without a trailing ``/``."""
    return request.scope.get("root_path", "").rstrip("/")


def _sealed(page: HTMLResponse) -> HTMLResponse:
    """``page`` with the policy that lets it load nothing from elsewhere."""
    page.headers["Content-Security-Policy"] = CSP
    return page


def install(app: FastAPI) -> None:
    """Serve ``/docs``, ``/redoc`` and their assets; create the app with
    ``docs_url=None, redoc_url=None`` so FastAPI's CDN pages are not installed too."""
    app.mount(ASSETS_PATH, StaticFiles(directory=assets_dir()), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = _root(request)
        return _sealed(
            get_swagger_ui_html(
                openapi_url=root + openapi_url,
                title=f"{app.title} API",
                swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
                swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
                swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
                # Swagger UI's default validator badge is an image from a public server.
                swagger_ui_parameters={"validatorUrl": None},
            )
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = _root(request)
        return _sealed(
            get_redoc_html(
                openapi_url=root + openapi_url,
                title=f"{app.title} API",
                redoc_js_url=f"{root}{ASSETS_PATH}/redoc.standalone.js",
                redoc_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
                with_google_fonts=False,
            )
        )

    @app.get("/", include_in_schema=False)
    async def index(request: Request) -> HTMLResponse:
        root = _root(request)
        links = [
            ("/docs", "API reference (Swagger UI): try the endpoints"),
            ("/redoc", "API reference (ReDoc)"),
            (openapi_url, "OpenAPI schema (JSON)"),
        ]
        if request.app.state.settings.resolved_web_demo:
            links.insert(0, ("/demo", "Demo page: pick an agent, press Call, talk"))
        items = "".join(
            f'<li><a href="{html.escape(root + path)}">{html.escape(text)}</a></li>'
            for path, text in links
        )
        return HTMLResponse(
            "<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<title>{html.escape(app.title)}</title></head><body>"
            f"<h1>{html.escape(app.title)}</h1><p>Real-time voice agents: start a session with "
            f"<code>POST /voice/start</code>.</p><ul>{items}</ul></body></html>"
        )

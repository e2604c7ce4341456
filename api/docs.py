"""The API described by itself: the OpenAPI document and Swagger UI, both anonymous.

``GET /api/v1/openapi.json`` is built once per process from the models and the settings
(:func:`sendmail.contract.openapi.build_openapi`). ``GET /api/v1/docs`` is Swagger UI from the
packaged distribution (``swagger-ui-bundle-v2``): no CDN, it works offline. Its static files are
served from ``/api/v1/docs/{file}`` out of a fixed allow-list of the package's files, so no request
path ever reaches the file system. ``/api/swagger-ui/index.html``, where v1 served its UI,
redirects.

These routes serve the documentation and are not themselves in it. Domain modules and the
Swagger UI package are imported inside the functions: keeping ``function_app`` cheap to import.
"""

import functools
import html
import json
from typing import Any

import azure.functions as func

from api.http import request_path, url_for, v1_errors

bp = func.Blueprint()

OPENAPI_ROUTE = "v1/openapi.json"
#: The page (empty ``path``) and its static files; one catch-all route, so no two routes overlap.
DOCS_ROUTE = "v1/docs/{*path}"
#: Where v1 served Swagger UI (under the Functions route prefix).
V1_SWAGGER_ROUTE = "swagger-ui/index.html"

#: The functions of this blueprint: they serve the document, and are not described in it.
DOCS_FUNCTIONS = frozenset({"openapi_document", "docs", "v1_swagger_ui"})

_CONTENT_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".png": "image/png",
}
#: Packaged files not served: the stock page and initializer point at the petstore demo.
#: (Source maps are not served either: only a browser's developer tools ask for them.)
_NOT_SERVED = frozenset({"index.html", "swagger-initializer.js"})
_INITIALIZER = "docs-initializer.js"
_STATIC_CACHE = {"Cache-Control": "public, max-age=86400"}
_PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}

_PAGE = """<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <title>Send-Mail API</title>
    <link rel="stylesheet" type="text/css" href="{assets}swagger-ui.css">
    <link rel="stylesheet" type="text/css" href="{assets}index.css">
    <link rel="icon" type="image/png" href="{assets}favicon-32x32.png" sizes="32x32">
    <link rel="icon" type="image/png" href="{assets}favicon-16x16.png" sizes="16x16">
  </head>
  <body>
    <div id="swagger-ui" data-openapi-url="{document}"></div>
    <script src="{assets}swagger-ui-bundle.js" charset="utf-8"></script>
    <script src="{assets}{initializer}" charset="utf-8"></script>
  </body>
</html>
"""

# A file, not an inline script, so a Content-Security-Policy without 'unsafe-inline' allows it.
# validatorUrl null: Swagger UI would otherwise send the document to validator.swagger.io.
_INITIALIZER_JS = """window.onload = function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    domNode: root,
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  });
};
"""


@bp.function_name("openapi_document")
@bp.route(route=OPENAPI_ROUTE, methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@v1_errors
async def openapi_document(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(
        _document.get(),
        status_code=200,
        headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"},
        mimetype="application/json",
    )


@bp.function_name("docs")
@bp.route(route=DOCS_ROUTE, methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@v1_errors
async def docs(req: func.HttpRequest) -> func.HttpResponse:
    name = req.route_params.get("path") or ""
    if not name:
        return _page(req)
    if name == _INITIALIZER:
        return func.HttpResponse(
            _INITIALIZER_JS,
            headers={**_STATIC_CACHE, "X-Content-Type-Options": "nosniff"},
            mimetype="text/javascript",
            charset="utf-8",
        )
    asset = _assets().get(name)
    if asset is None:
        from sendmail.contract.errors import NotFound

        raise NotFound("No such documentation file.")
    content_type = _CONTENT_TYPES[name[name.rindex(".") :]]
    return func.HttpResponse(
        _read(asset),
        headers={**_STATIC_CACHE, "X-Content-Type-Options": "nosniff"},
        mimetype=content_type,
        charset="utf-8",
    )


@bp.function_name("v1_swagger_ui")
@bp.route(route=V1_SWAGGER_ROUTE, methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@v1_errors
async def v1_swagger_ui(req: func.HttpRequest) -> func.HttpResponse:
    # ".../swagger-ui/index.html" -> ".../v1/docs", whatever the route prefix is.
    prefix = request_path(req).rsplit("/", 2)[0]
    return func.HttpResponse(
        status_code=302,
        headers={"Location": url_for(req, f"{prefix}/v1/docs"), "Cache-Control": "no-cache"},
    )


def _page(req: func.HttpRequest) -> func.HttpResponse:
    # Relative URLs: right behind a proxy that rewrites the path, with or without a final "/".
    if request_path(req).endswith("/"):
        assets, document = "./", "../openapi.json"
    else:
        assets, document = "docs/", "openapi.json"
    page = _PAGE.format(
        assets=html.escape(assets),
        document=html.escape(document),
        initializer=_INITIALIZER,
    )
    return func.HttpResponse(page, headers=_PAGE_HEADERS, mimetype="text/html", charset="utf-8")


class _DocumentCache:
    """The serialized document, built once per settings object (so once per process)."""

    def __init__(self) -> None:
        self._settings: object = None
        self._body = b""

    def get(self) -> bytes:
        from sendmail.contract.openapi import build_openapi
        from sendmail.platform.settings import get_settings

        settings = get_settings()
        if settings is not self._settings:
            document = build_openapi(settings)
            self._body = json.dumps(document, ensure_ascii=False, indent=2).encode("utf-8")
            self._settings = settings
        return self._body


_document = _DocumentCache()


@functools.cache
def _assets() -> dict[str, Any]:
    """The packaged Swagger UI files that may be served, by file name (a fixed allow-list)."""
    from swagger_ui_bundle import swagger_ui_path

    return {
        entry.name: entry
        for entry in swagger_ui_path.iterdir()
        if entry.is_file()
        and entry.name not in _NOT_SERVED
        and any(entry.name.endswith(suffix) for suffix in _CONTENT_TYPES)
    }


@functools.lru_cache(maxsize=16)
def _read(asset: Any) -> bytes:
    data: bytes = asset.read_bytes()
    return data

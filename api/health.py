"""``GET /api/health``: anonymous liveness. It touches no dependency, so it stays cheap."""

import azure.functions as func

from api.http import json_response

bp = func.Blueprint()


@bp.function_name("health")
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    return json_response({"status": "ok"})

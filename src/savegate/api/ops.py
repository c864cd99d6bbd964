"""Operations endpoints: liveness, readiness and the config reload."""

from __future__ import annotations

from savegate.api.http import HttpRequest, Response, json_response
from savegate.app import Gateway
from savegate.config import ConfigError
from savegate.core.errors import GatewayError
from savegate.core.keys import ApiKey


async def live(gateway: Gateway, request: HttpRequest) -> Response:
    """The process answers: 200 as long as it runs, draining or not."""
    return json_response({"status": "ok"})


async def ready(gateway: Gateway, request: HttpRequest) -> Response:
    """200 when this process should get requests; else 503 naming what failed."""
    ok, checks = await gateway.readiness.check()
    if ok:
        return json_response({"status": "ready", "checks": checks})
    failed = [name for name, result in checks.items() if result != "ok"]
    status = "draining" if gateway.draining else "unavailable"
    return json_response({"status": status, "failed": failed, "checks": checks}, status=503)


async def reload(gateway: Gateway, request: HttpRequest, key: ApiKey) -> Response:
    """Read the config file again and apply it on every worker; an invalid file changes
    nothing and is answered 422 with its problems."""
    reloader = gateway.reloader
    if reloader is None:
        raise GatewayError("This gateway was not started from a config file.", status=501)
    try:
        done = reloader.reload(everywhere=True)
    except ConfigError as exc:
        raise GatewayError(
            f"The config was not reloaded: {'; '.join(exc.problems) or exc}",
            status=422,
            type="invalid_request_error",
            code="invalid_config",
        ) from None
    body = {
        "status": "reloaded",
        "applied": done.applied,
        "restart_required": done.restart_required,
        "workers": gateway.config.server.processes,
    }
    return json_response(body)

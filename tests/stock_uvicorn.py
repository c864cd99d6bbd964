"""SaveGate's ASGI app under stock uvicorn, without our server protocol: what someone
who mounts the app in another ASGI server gets. `python -m tests.stock_uvicorn
--config … --data-dir … --port …`."""

from __future__ import annotations

import argparse

import uvicorn

from savegate.api.asgi import ApiApp
from savegate.app import Gateway
from savegate.cli import config_from


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    parser.add_argument("--data-dir")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = ApiApp(Gateway(config_from(args)))
    uvicorn.run(app, host="127.0.0.1", port=args.port, lifespan="on", log_level="warning")


if __name__ == "__main__":
    main()

"""Run the web app under one of the supported HTTP servers.

Servers that start worker processes load the app by name (`creamery.web:app_from_env`), so the
configuration travels to them as JSON in the `_CREAMERY_WORKER_CONFIG` environment variable
(not `CREAMERY_CONFIG`, which names the --config file: see settings.py).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable
from typing import Any

import creamery
from creamery.config import Config, ConfigError
from creamery.logs import LOGGER_NAME, log_level, logging_config
from creamery.observe import prepare_multiprocess_metrics

CONFIG_ENV = "_CREAMERY_WORKER_CONFIG"
APP_FACTORY = "creamery.web:app_from_env"
# pypiserver's bottle servers that creamery does not run.
UNSUPPORTED_SERVERS = ("cherrypy", "gevent", "paste", "twisted")
# Multipart framing around the largest upload, so the server never refuses what the app accepts.
_UPLOAD_SLACK = 1 << 20

log = logging.getLogger(LOGGER_NAME)

Runner = Callable[[Config], None]


def serve(config: Config) -> None:
    """Serve until interrupted; ConfigError if the chosen server can't be used."""
    name = pick_server(config.server)
    os.environ[CONFIG_ENV] = config.to_json()
    prepare_multiprocess_metrics(config)
    log.info(
        "creamery %s serving %s on %s",
        creamery.__version__,
        ", ".join(str(root) for root in config.roots),
        _url(config),
    )
    if config.workers > 1 and name in ("waitress", "wsgiref"):
        log.warning("server %r runs a single process: --workers %d ignored", name, config.workers)
    RUNNERS[name](config)


def pick_server(choice: str) -> str:
    """Resolve "auto" and check that the chosen server is installed."""
    if choice in UNSUPPORTED_SERVERS:
        raise ConfigError(
            f"server {choice!r} is not supported by creamery: use one of {', '.join(SERVERS)}"
        )
    if choice == "auto":
        for name in ("granian", "uvicorn"):
            if _installed(name):
                return name
        raise ConfigError("no server installed: pip install granian")
    if choice not in RUNNERS:
        raise ConfigError(f"unknown server {choice!r}: use one of {', '.join(SERVERS)}")
    if not _installed(choice):
        raise ConfigError(f"server {choice!r} is not installed: pip install {choice}")
    return choice


def _installed(module: str) -> bool:
    return module == "wsgiref" or importlib.util.find_spec(module) is not None


def _url(config: Config) -> str:
    host = f"[{config.host}]" if ":" in config.host else config.host
    return f"http://{host}:{config.port}{config.server_base_url.rstrip('/')}/"


def _bind(config: Config) -> str:
    return _url(config).removeprefix("http://").partition("/")[0]


def _run_granian(config: Config) -> None:
    if config.workers == 1:
        _run_granian_in_process(config)
        return
    from granian import Granian
    from granian.constants import Interfaces
    from granian.log import LogLevels

    levels = {0: LogLevels.warning, 1: LogLevels.info}
    Granian(
        target=APP_FACTORY,
        factory=True,
        address=config.host,
        port=config.port,
        interface=Interfaces.ASGI,
        workers=config.workers,
        websockets=False,
        log_level=levels.get(config.verbosity, LogLevels.debug),
        log_dictconfig=logging_config(config, ["_granian"]),
        log_access=False,
    ).serve()


def _run_granian_in_process(config: Config) -> None:
    """One worker: granian's embedded server, in this process.

    granian's usual mode keeps a supervisor interpreter beside each worker process; with a
    single worker that is ~30 MB and a fork for nothing (measured: same req/s, a third less
    memory, a faster start).
    """
    import asyncio
    import signal

    from granian.constants import Interfaces
    from granian.log import LogLevels
    from granian.server.embed import Server

    from creamery.web import create_app

    logging.getLogger("_granian").addFilter(_QuietEmbedWarning())
    levels = {0: LogLevels.warning, 1: LogLevels.info}
    log_dict = logging_config(config, ["_granian"])
    if config.log_conf is not None:
        # This process is already configured from --log-conf: granian's own set-up must
        # leave creamery's loggers alone.
        del log_dict["loggers"][LOGGER_NAME]
    app = create_app(config)
    # Scan before serving: alone on the CPU, not beside granian's threads starting up.
    app.start()
    server = Server(
        app,
        address=config.host,
        port=config.port,
        interface=Interfaces.ASGI,
        websockets=False,
        log_level=levels.get(config.verbosity, LogLevels.debug),
        log_dictconfig=log_dict,
        log_access=False,
    )

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, server.stop)
        # systemd's ExecReload sends HUP: nothing needs reloading (the password file is re-read
        # when it changes, the directories are watched), and HUP must not end the server.
        loop.add_signal_handler(signal.SIGHUP, log.info, "SIGHUP: nothing to reload")
        await server.serve()

    asyncio.run(serve())


class _QuietEmbedWarning(logging.Filter):
    """granian warns that its embedded mode is experimental: creamery chose it knowingly."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "experimental" not in record.getMessage()


def _run_uvicorn(config: Config) -> None:
    import uvicorn

    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=config.host,
        port=config.port,
        workers=config.workers,
        log_config=logging_config(config, ["uvicorn"]),
        log_level=log_level(config.verbosity),
        access_log=False,
        # The app reads X-Forwarded-* itself, the same way under every server.
        proxy_headers=False,
    )


def _gunicorn_worker_class() -> str:
    if _installed("uvicorn_worker"):
        return "uvicorn_worker.UvicornWorker"
    if _installed("uvicorn"):
        return "uvicorn.workers.UvicornWorker"
    # Threaded workers: a sync worker is killed when one upload outlasts gunicorn's timeout.
    return "gthread"


def _run_gunicorn(config: Config) -> None:
    from gunicorn.app.base import BaseApplication

    worker_class = _gunicorn_worker_class()
    log_dict = logging_config(config, ["gunicorn.error", "uvicorn"])
    log_dict["loggers"]["gunicorn.access"] = {"propagate": False}
    log_dict["root"] = {}  # replaces gunicorn's default root handler, which we don't define
    options: dict[str, Any] = {
        "bind": _bind(config),
        "workers": config.workers,
        "worker_class": worker_class,
        "accesslog": None,
        "logconfig_dict": log_dict,
    }

    class Application(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)
            # pypiserver's docker image configured gunicorn through GUNICORN_CMD_ARGS.
            env_args = self.cfg.parser().parse_args(self.cfg.get_cmd_args_from_env())
            for key, value in vars(env_args).items():
                if value is not None and key in self.cfg.settings:
                    self.cfg.set(key.lower(), value)

        def load(self) -> Any:
            from creamery.web import create_app

            app = create_app(config)
            return _wsgi(app) if worker_class == "gthread" else app

    Application().run()


def _run_hypercorn(config: Config) -> None:
    from hypercorn.config import Config as HypercornConfig
    from hypercorn.run import run

    settings = HypercornConfig()
    settings.application_path = APP_FACTORY + "()"  # hypercorn evaluates the part after ":"
    settings.bind = [_bind(config)]
    settings.workers = config.workers
    settings.accesslog = None
    settings.loglevel = logging.getLevelName(log_level(config.verbosity))
    settings.logconfig_dict = logging_config(config, ["hypercorn.error"])
    run(settings)


def _run_waitress(config: Config) -> None:
    import waitress

    from creamery.web import create_app

    waitress.serve(
        _wsgi(create_app(config)),
        host=config.host,
        port=config.port,
        ident=f"creamery/{creamery.__version__}",
        max_request_body_size=config.max_upload_size + _UPLOAD_SLACK,
    )


def _run_wsgiref(config: Config) -> None:
    import signal
    import socket
    from contextlib import suppress
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from creamery.web import create_app

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in config.host else socket.AF_INET

    class Handler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            """The app logs requests itself; wsgiref would print them to stderr."""

    app = _wsgi(create_app(config))
    # Ctrl-C and SIGTERM stop it cleanly with status 0, as they do the other servers.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with (
        make_server(config.host, config.port, app, Server, Handler) as httpd,
        suppress(KeyboardInterrupt),
    ):
        httpd.serve_forever()


def _wsgi(asgi_app: Any) -> Any:
    from creamery.wsgi import WsgiApp

    return WsgiApp(asgi_app)


RUNNERS: dict[str, Runner] = {
    "granian": _run_granian,
    "uvicorn": _run_uvicorn,
    "gunicorn": _run_gunicorn,
    "hypercorn": _run_hypercorn,
    "waitress": _run_waitress,
    "wsgiref": _run_wsgiref,
}
SERVERS = ("auto", *RUNNERS)
SERVER_CHOICES = (*SERVERS, *UNSUPPORTED_SERVERS)

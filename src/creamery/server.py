"""Run the web app under one of the supported HTTP servers.

Servers that start worker processes load the app by name (`creamery.web.app:app_from_env`), so the
configuration travels to them as JSON in the `_CREAMERY_WORKER_CONFIG` environment variable
(not `CREAMERY_CONFIG`, which names the --config file: see settings.py).
"""

from __future__ import annotations

import errno
import importlib.util
import logging
import math
import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from creamery.core.config import CONFIG_ENV, Config, ConfigError
from creamery.core.version import __version__
from creamery.http.logs import LOGGER_NAME, log_level, logging_config
from creamery.http.observe import prepare_multiprocess_metrics
from creamery.http.reaper import start_reaper

if TYPE_CHECKING:
    from creamery.web.app import Creamery
    from creamery.wsgi import WsgiApp  # start-up cost: a2wsgi, for WSGI servers only

APP_FACTORY = "creamery.web.app:app_from_env"
# pypiserver's bottle servers that creamery does not run.
UNSUPPORTED_SERVERS = ("cherrypy", "gevent", "paste", "twisted")
# Multipart framing around the largest upload, so the server never refuses what the app accepts.
_UPLOAD_SLACK = 1 << 20
# Connections waiting in the kernel's queue beyond --max-connections (capped by somaxconn).
_BACKLOG = 1024
# Descriptors beside the connections: files being sent, the index's watches, logs.
_SPARE_FDS = 256

log = logging.getLogger(LOGGER_NAME)

Runner = Callable[[Config], None]


def serve(config: Config) -> None:
    """Serve until interrupted; ConfigError if the chosen server can't be used."""
    name = pick_server(config.server)
    if not config.reuse_port:
        check_port_free(config.host, config.port)
    raise_fd_limit(config.max_connections)
    os.environ[CONFIG_ENV] = config.to_json()
    prepare_multiprocess_metrics(config)
    log.info(
        "creamery %s serving %s on %s",
        __version__,
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


def check_port_free(host: str, port: int) -> None:
    """ConfigError if something listens on host:port (granian would share it: SO_REUSEPORT).

    A bind without SO_REUSEPORT fails on a port that another socket listens on, whatever that
    socket's options; SO_REUSEADDR lets a port whose old connections linger be bound again.
    """
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"can't listen on {where}: Address already in use (another server has "
                    f"this port; --reuse-port shares it)"
                ) from None
            raise ConfigError(f"can't listen on {where}: {error.strerror or error}") from None


def raise_fd_limit(max_connections: int) -> None:
    """Raise the soft limit of open files to the hard limit: each connection takes one."""
    try:
        import resource
    except ImportError:  # Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (OSError, ValueError):
            pass
    if soft != resource.RLIM_INFINITY and soft < max_connections + _SPARE_FDS:
        log.warning(
            "open-file limit %d is below --max-connections %d + %d: raise it (ulimit -n, "
            "LimitNOFILE=) or lower --max-connections",
            soft,
            max_connections,
            _SPARE_FDS,
        )


def _per_worker(config: Config) -> int:
    return max(1, math.ceil(config.max_connections / config.workers))


def _granian_limits(config: Config) -> dict[str, Any]:
    """granian's own limits: HTTP/1.1 only, connections at once per worker, the header timeout.

    Its backpressure (default: backlog / workers, 128 when embedded) is the number of
    connections a worker serves at once, idle ones included: the rest wait in the listen queue.
    HTTP/2 (granian's `auto` takes cleartext HTTP/2 with prior knowledge) has none of the
    HTTP/1 limits: a connection that sent only its preface was never closed, so a few thousand
    of them held every connection slot, and it takes 16 MiB of headers per stream.
    """
    from granian.constants import HTTPModes
    from granian.http import HTTP1Settings

    return {
        "http": HTTPModes.http1,
        "backlog": _BACKLOG,
        "backpressure": _per_worker(config),
        "http1_settings": HTTP1Settings(header_read_timeout=round(config.header_timeout * 1000)),
    }


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
        **_granian_limits(config),
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

    from creamery.web.app import create_app  # start-up cost: each server loads only its own

    logging.getLogger("_granian").addFilter(_QuietEmbedWarning())
    levels = {0: LogLevels.warning, 1: LogLevels.info}
    log_dict = logging_config(config, ["_granian"])
    if config.log_conf is not None:
        # This process is already configured from --log-conf: granian's own set-up must
        # leave creamery's loggers alone.
        del log_dict["loggers"][LOGGER_NAME]
    app = create_app(config)
    # Scan before serving: alone on the CPU, not beside granian's threads starting up.
    app.start_or_wait()
    start_reaper(config)
    server = Server(
        app,
        address=config.host,
        port=config.port,
        interface=Interfaces.ASGI,
        websockets=False,
        log_level=levels.get(config.verbosity, LogLevels.debug),
        log_dictconfig=log_dict,
        log_access=False,
        **_granian_limits(config),
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
        backlog=_BACKLOG,
        # uvicorn's limit is for each worker, and answers 503 past it.
        limit_concurrency=_per_worker(config),
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
        "backlog": _BACKLOG,
        "worker_connections": _per_worker(config),  # gthread's limit (uvicorn's worker has none)
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

        # types-gunicorn's WSGI alias has a start_response without PEP 3333's exc_info.
        def load(self) -> WsgiApp | Creamery:  # type: ignore[override]
            from creamery.web.app import create_app  # in the worker, after gunicorn forked

            app = create_app(config)
            start_reaper(config)
            return _wsgi(app) if worker_class == "gthread" else app

    Application().run()


def _run_hypercorn(config: Config) -> None:
    from hypercorn.config import Config as HypercornConfig
    from hypercorn.run import run

    settings = HypercornConfig()
    settings.application_path = APP_FACTORY + "()"  # hypercorn evaluates the part after ":"
    settings.bind = [_bind(config)]
    settings.workers = config.workers
    settings.backlog = _BACKLOG
    settings.accesslog = None
    settings.loglevel = logging.getLevelName(log_level(config.verbosity))
    settings.logconfig_dict = logging_config(config, ["hypercorn.error"])
    run(settings)


def _run_waitress(config: Config) -> None:
    import waitress

    from creamery.web.app import create_app  # start-up cost: each server loads only its own

    start_reaper(config)
    waitress.serve(
        _wsgi(create_app(config)),
        host=config.host,
        port=config.port,
        ident=f"creamery/{__version__}",
        max_request_body_size=config.max_upload_size + _UPLOAD_SLACK,
        connection_limit=config.max_connections,
        backlog=_BACKLOG,
        # Closes a connection silent for this long, whatever it was waiting for.
        channel_timeout=max(config.header_timeout, config.body_timeout),
    )


def _run_wsgiref(config: Config) -> None:
    import signal
    import socket
    from contextlib import suppress
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from creamery.web.app import create_app  # start-up cost: each server loads only its own

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in config.host else socket.AF_INET

    class Handler(WSGIRequestHandler):
        # A socket timeout: each wait for header or body bytes is bounded. (a2wsgi reads the
        # body in this thread, out of reach of the app's body timeout; wsgiref answers 500.)
        timeout = min(t for t in (config.header_timeout, config.body_timeout) if t)

        def log_message(self, format: str, *args: Any) -> None:
            """The app logs requests itself; wsgiref would print them to stderr."""

    app = _wsgi(create_app(config))
    start_reaper(config)
    # Ctrl-C and SIGTERM stop it cleanly with status 0, as they do the other servers.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with (
        make_server(config.host, config.port, app, Server, Handler) as httpd,
        suppress(KeyboardInterrupt),
    ):
        httpd.serve_forever()


def _wsgi(asgi_app: Creamery) -> WsgiApp:
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

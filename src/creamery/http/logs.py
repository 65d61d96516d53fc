"""Logging from the command line: pypiserver's `-v`, `--log-file`, `--log-stream`, `--log-frmt`.

Everything is one `logging.config.dictConfig` dictionary, so the same data configures this process
and can be handed to a server (granian, uvicorn, gunicorn, hypercorn) for its worker processes.
"""

from __future__ import annotations

import io
import json
import logging
import logging.config
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from creamery.core.config import Config, ConfigError
from creamery.core.operator_files import read_operator_text
from creamery.http.observe import one_line

LOGGER_NAME = "creamery"
MAX_LOG_CONF_BYTES = 1 << 20  # a larger --log-conf file is refused unread
# Level 1 rather than NOTSET: on a named logger NOTSET defers to the root logger (WARNING).
_VERBOSITY_LEVELS = (logging.WARNING, logging.INFO, logging.DEBUG, 1)


def log_level(verbosity: int) -> int:
    """pypiserver's `-v` count: 0 WARNING, 1 INFO, 2 DEBUG, 3 or more everything."""
    return _VERBOSITY_LEVELS[min(max(verbosity, 0), len(_VERBOSITY_LEVELS) - 1)]


class OneLine(logging.Filter):
    """Every log message on one line, its control characters escaped: a value a client sent (a
    form field, a filename) can't forge a log line. A record logged with `extra={"multiline":
    True}` (a server error's traceback) keeps its lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "multiline", False):
            return True
        message = record.getMessage()
        escaped = one_line(message)
        if escaped is not message:
            record.msg, record.args = escaped, None
        return True


def logging_config(config: Config, loggers: Iterable[str] = ()) -> dict[str, Any]:
    """A dictConfig for the "creamery" logger and `loggers`, all with the same handlers."""
    handlers: dict[str, dict[str, Any]] = {}
    if config.log_stream != "none":
        handlers["stream"] = {
            "class": "logging.StreamHandler",
            "stream": f"ext://sys.{config.log_stream}",
            "formatter": "creamery",
            "filters": ["one_line"],
        }
    if config.log_file is not None:
        handlers["file"] = {
            "class": "logging.FileHandler",
            "filename": str(config.log_file),
            "formatter": "creamery",
            "filters": ["one_line"],
        }
    if not handlers:  # without any handler, logging's last resort would print warnings to stderr
        handlers["null"] = {"class": "logging.NullHandler"}
    level = log_level(config.verbosity)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"creamery": {"format": config.log_frmt}},
        "filters": {"one_line": {"()": "creamery.http.logs.OneLine"}},
        "handlers": handlers,
        "loggers": {
            name: {"level": level, "handlers": list(handlers), "propagate": False}
            for name in (LOGGER_NAME, *loggers)
        },
    }


def apply_log_conf(path: Path) -> None:
    """`--log-conf FILE`: a JSON dictConfig, or an INI file for `logging.config.fileConfig`."""
    text = read_operator_text(path, "logging configuration", MAX_LOG_CONF_BYTES)  # no FIFO
    try:
        if path.suffix.lower() == ".json":
            logging.config.dictConfig(json.loads(text))
        else:
            logging.config.fileConfig(io.StringIO(text), disable_existing_loggers=False)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as error:
        raise ConfigError(f"can't use logging configuration {str(path)!r}: {error}") from error


def setup_logging(config: Config) -> None:
    """Configure this process; raise ConfigError for a bad format or an unwritable log file."""
    if config.log_conf is not None:
        apply_log_conf(config.log_conf)
        return
    try:
        logging.Formatter(config.log_frmt, validate=True)
    except ValueError as error:
        raise ConfigError(f"invalid --log-frmt {config.log_frmt!r}: {error}") from error
    try:
        logging.config.dictConfig(logging_config(config))
    except ValueError as error:
        cause = error.__cause__
        reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(cause)
        raise ConfigError(f"can't open log file {str(config.log_file)!r}: {reason}") from error

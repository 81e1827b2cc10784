"""WSGI entry point: ``gunicorn gateway.wsgi:app``.

Process set-up happens here, before the app is built: logs become JSON lines
(``FEDFAAS_LOG_LEVEL``, default INFO), and the gunicorn workers of one master
share a Prometheus metrics directory, so that any worker answers ``/metrics``
with the whole gateway's counts.  The directory must be chosen before
``prometheus_client`` is first imported, hence the late imports below.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

# fedfaas.config imports no prometheus_client: safe before the metrics directory is set.
from fedfaas.config import load_settings


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def share_metrics_between_workers() -> str | None:
    """Set ``PROMETHEUS_MULTIPROC_DIR`` for this gunicorn master's workers; returns it.

    An operator's own ``PROMETHEUS_MULTIPROC_DIR`` wins (they then wipe it on
    start).  Otherwise, under gunicorn, the workers of one master share
    ``<FEDFAAS_HOME or tmp>/gateway-metrics/<master pid>``, which is fresh for a
    new master; folders of masters that died are removed.  Outside gunicorn
    (one process) nothing is needed.
    """
    chosen = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if chosen:
        Path(chosen).mkdir(parents=True, exist_ok=True)
        return chosen
    if not os.environ.get("SERVER_SOFTWARE", "").startswith("gunicorn/"):
        return None
    base = Path(load_settings().home or tempfile.gettempdir()) / "gateway-metrics"
    master = os.getppid()
    folder = base / str(master)
    folder.mkdir(parents=True, exist_ok=True)
    for other in base.iterdir():
        if other.name.isdigit() and int(other.name) != master and not _pid_alive(int(other.name)):
            shutil.rmtree(other, ignore_errors=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    return str(folder)


share_metrics_between_workers()

from gateway.app import create_app  # noqa: E402  (after the metrics directory is set)
from gateway.logs import configure_logging  # noqa: E402

configure_logging(load_settings().log_level.upper())
app = create_app()

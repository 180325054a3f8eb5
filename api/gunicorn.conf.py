"""gunicorn's settings for the API: `flashsale serve api` runs
`gunicorn -c <this file> "api.app:create_app()"`.

It ships inside the `api` package so that an installed copy (the Docker image installs into
site-packages) finds it beside the code; the `gunicorn.conf.py` at the project root, which
gunicorn reads by itself when started there without `-c`, is a link to this file. Values come
from the one settings object; flags given on gunicorn's command line override them (the
admission benchmark binds its own port that way).
"""

import gc as _gc

from api import single_write as _single_write
from common.platform.settings import settings_or_exit

_settings = settings_or_exit()

# gevent: thousands of shoppers polling at once each hold a connection, not a thread.
worker_class = "gevent"
workers = _settings.web_concurrency
# Every waiting shopper holds a connection (an event stream, or a keep-alive between polls):
# a worker that has this many stops accepting, and new connections wait in the listen queue.
# 2000 per worker left 10,000 shoppers of a surge waiting for SYN retries (issue 15); a gevent
# connection costs a few kB. The process needs as many file descriptors (ulimit -n).
worker_connections = 10_000
# The listen queue for a burst of connections the workers have not accepted yet (gunicorn's
# default is 2048). The kernel caps it at net.core.somaxconn: see README, "Live updates".
backlog = 8192
# Under `flashsale run` the supervisor holds the listening socket and hands it to each new
# master (LISTEN_FD): while a killed master restarts, the kernel queues connections instead of
# refusing them (4-5 s of refusals before, while no process listened).
bind = (f"fd://{_settings.listen_fd}" if _settings.listen_fd is not None
        else f"{_settings.host}:{_settings.port}")
graceful_timeout = 10
timeout = 30
# Longer than the usual load balancer idle timeout (60 s): otherwise a request sent on a
# connection the server is just closing is reset.
keepalive = 75
accesslog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms rid=%({x-request-id}o)s'
# Writes access_log_format's line without gunicorn's per-request dict of every header
# (api/access_log.py), and honours ACCESS_LOG_SAMPLE_RATE.
logger_class = "api.access_log.AccessLog"


# The worker's first requests load the rest lazily (Celery's and kombu's sending machinery, the
# scripts, the clients' connections): frozen once more after this many requests.
_FREEZE_AGAIN_AFTER = 1000
_served = [0]


def post_worker_init(_worker: object) -> None:
    """What the worker loaded (Flask, the libraries, the app) lives as long as the worker:
    frozen out of the collector's sight, a full collection no longer walks it. Before, each
    worker's full collections under an admission flood paused it for up to 92 ms (seven in a
    10,000-admission run, 328 ms in all; gc.callbacks), stalling every connection it held:
    the p95 and p99 of `make bench` and `make bench-peer`.

    It also makes the headers and a plain body leave in one write (api/single_write.py)."""
    _single_write.install()
    _gc.collect()
    _gc.freeze()


def post_request(_worker: object, _req: object, _environ: object, _resp: object) -> None:
    _served[0] += 1
    if _served[0] == _FREEZE_AGAIN_AFTER:
        _gc.collect()
        _gc.freeze()

"""gunicorn settings for creamery (docs/deploy.md#gunicorn-and-uvicorn).

    gunicorn -c /etc/creamery/gunicorn.conf.py

Each worker process keeps its own index of the directories; an upload through one worker is
seen by the others at once (creamery's change journal), so any number of workers is safe.
"""

# pypiserver's app() keywords: roots, password_file, authenticate, overwrite, cache_dir, ...
wsgi_app = 'creamery:app(roots=["/srv/packages"], password_file="/etc/creamery/htpasswd")'
bind = "127.0.0.1:8080"
workers = 4
# An ASGI worker: long uploads and slow clients never hit gunicorn's worker timeout.
# With the uvicorn-worker package installed: "uvicorn_worker.UvicornWorker".
worker_class = "uvicorn.workers.UvicornWorker"
graceful_timeout = 30

"""creamery as an ASGI application object, for servers that load `module:attribute`.

    uvicorn --app-dir /etc/creamery creamery_asgi:app --workers 4 --host 127.0.0.1 --port 8080

Copy this file to /etc/creamery/ and edit the keywords: they are pypiserver's app() keywords
(roots, password_file, authenticate, overwrite, cache_dir, ...), see docs/deploy.md.
"""

import creamery

app = creamery.app(
    roots=["/srv/packages"],
    password_file="/etc/creamery/htpasswd",
)

#!/usr/bin/env python3
"""Docker HEALTHCHECK of the creamery image: exit 0 when the health endpoint answers 200.

The slim image has no curl. The URL follows the variables the server reads: CREAMERY_PORT (or
pypiserver's PYPISERVER_PORT), CREAMERY_SERVER_BASE_URL and CREAMERY_HEALTH_ENDPOINT.
"""

import os
import sys
import urllib.request


def health_url(env: dict[str, str]) -> str:
    port = env.get("CREAMERY_PORT") or env.get("PYPISERVER_PORT") or "8080"
    prefix = env.get("CREAMERY_SERVER_BASE_URL", "/").strip("/")
    endpoint = env.get("CREAMERY_HEALTH_ENDPOINT") or "/health"
    return f"http://127.0.0.1:{port}{'/' + prefix if prefix else ''}{endpoint}"


def main() -> int:
    url = health_url(dict(os.environ))
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except OSError as error:  # URLError and HTTPError (503 while loading) are OSErrors
        print(f"{url}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

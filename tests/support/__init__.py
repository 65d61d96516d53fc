"""What the test modules share: real servers, real clients, real distributions.

Fixtures stay in `tests/conftest.py`; everything here is plain functions and classes that a test
module imports by name (`from support.servers import run_server`). `tests/` is on `sys.path`
under pytest (rootdir-relative, also in every xdist worker), so `support` is a top-level package.

- `clients`   subprocess environments and runners: pip, uv, twine, `python -m creamery`
- `corpus`    the session's two package roots with known contents
- `dists`     real wheels and sdists built with the standard library, sidecars, hostile archives
- `forms`     multipart bodies written byte for byte, and uploads that send them
- `htpasswd`  password files as `htpasswd -s` or `creamery passwd` write them
- `polling`   waiting for what a server does in the background
- `servers`   `creamery run` and other server processes on 127.0.0.1; in-thread WSGI/HTTP servers
- `upstream`  a misbehaving package index in its own process, for the mirror and `update`
- `wire`      one raw HTTP/1.x exchange, and the JSON listing of a project
"""

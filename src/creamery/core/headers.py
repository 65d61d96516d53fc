"""Response headers every layer attaches: here, below the renderers that build pages with
ready headers and the HTTP helpers that send them."""

from __future__ import annotations

# Every response says so: a body echoing client input is never sniffed into HTML or script.
NOSNIFF = (b"x-content-type-options", b"nosniff")

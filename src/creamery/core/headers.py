"""Response headers every layer attaches: here, below the renderers that build pages with
ready headers and the HTTP helpers that send them."""

from __future__ import annotations

# Every response says so: a body echoing client input is never sniffed into HTML or script.
NOSNIFF = (b"x-content-type-options", b"nosniff")


def printable_value(text: str, limit: int, cut: str = "...") -> str:
    """*text* as a legal header value: printable ASCII, anything else escaped (CR and LF too,
    so text from a client, a file or an upstream can never start a header of its own), at most
    *limit* characters, ending in *cut* when shortened."""
    value = "".join(
        char if " " <= char <= "~" else char.encode("unicode_escape").decode("ascii")
        for char in text
    )
    if len(value) > limit:
        value = value[: limit - len(cut)] + cut
    return value

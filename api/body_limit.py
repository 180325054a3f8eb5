"""The request size limit for bodies sent without a Content-Length (chunked).

Werkzeug enforces MAX_CONTENT_LENGTH on such bodies by stopping at the limit, and the part
read so far looks like a whole body: an oversized chunked request became a 400 (malformed
JSON) or, when the first 64 KiB happened to parse, an ordinary request. This middleware
reads a chunked body up to one byte past the limit and states its length, so that the app
answers an oversized one 413 like any other, through its own error handler.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class ChunkedBodyLimit:
    def __init__(self, app: WSGIApp, max_content_length: int) -> None:
        self.app = app
        self.max_content_length = max_content_length

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if chunked and not environ.get("CONTENT_LENGTH"):
            body = environ["wsgi.input"].read(self.max_content_length + 1)
            # From here on the body is a plain one of known length (werkzeug ignores a length
            # given alongside chunked encoding); over the limit, that length alone is a 413.
            del environ["HTTP_TRANSFER_ENCODING"]
            environ["wsgi.input"] = io.BytesIO(b"" if len(body) > self.max_content_length else body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return self.app(environ, start_response)

"""Form bodies of the router API, read so that a malformed one is the client's error (400), not ours (500).

aiohttp decodes an ``application/x-www-form-urlencoded`` body as UTF-8 and raises ``UnicodeDecodeError`` for
anything else, which a route would turn into a 500 with a traceback in the log. Weave answered
``unable to parse form: ...`` with 400; so do we.
"""

from __future__ import annotations

from aiohttp import web
from multidict import MultiDictProxy


def _bad(reason: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=f"unable to parse form: {reason}\n", content_type="text/plain")


async def read_form(request: web.Request) -> MultiDictProxy[str]:
    """The form fields of the body (strings only: a file part is refused)."""
    try:
        form = await request.post()
    except UnicodeDecodeError:
        raise _bad("the body is not UTF-8") from None
    except ValueError as e:  # a malformed multipart body
        raise _bad(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    for key, value in form.items():
        if not isinstance(value, str):
            raise _bad(f"field {key!r} is a file, not text")
    return form  # type: ignore[return-value]


async def form_value(request: web.Request, key: str) -> str:
    """Go's ``FormValue``: the query string first, then the form body (read once: aiohttp caches it)."""
    if key in request.query:
        return request.query[key]
    return str((await read_form(request)).get(key, ""))

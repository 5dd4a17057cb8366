"""Request bodies declared in a way no parser can read are refused from their
Content-Type alone, before anything reads the body, with a 400 problem and no traceback.

Django takes a Content-Type's `charset` for the request's encoding whenever Python has
a codec of that name, and Python's codecs include ones that are not text encodings
(bz2, zlib, base64, hex, rot13, uu, quopri): a multipart form declared in one of them
was a 500 with a 70-line traceback on every page that reads a form (the login page,
the admin's), where the API, whose parsers catch it, answered 400. A form Django
refuses itself (an urlencoded body in anything but UTF-8, a multipart body without a
valid boundary) was a 400, but logged with a traceback all the same, as an error in
the code would be. Nothing here reads the body: the upload parsers that stream it
(core.uploads, core.body_limit) still get it whole.
"""

import codecs

from django.http import HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParser
from django.utils.deprecation import MiddlewareMixin

from core.errors import problem_response


def content_type_refusal(request: HttpRequest) -> str | None:
    """Why no parser can read this request's body as its Content-Type declares it; None
    if one can (or if it has none to read)."""
    params = request.content_params or {}
    charset = params.get("charset")
    if charset is not None:
        try:
            codec = codecs.lookup(charset)
        except LookupError:
            codec = None  # an unknown charset: Django ignores it and reads UTF-8
        if codec is not None and not getattr(codec, "_is_text_encoding", True):
            return f"The charset {charset!r} is not a text encoding."
        if codec is not None and request.content_type == "application/x-www-form-urlencoded" and charset.lower() != "utf-8":
            # Django's own rule (HttpRequest._load_post_and_files): such forms are UTF-8.
            return "An application/x-www-form-urlencoded body must be UTF-8 (charset=utf-8, or none)."
    if request.content_type == "multipart/form-data":
        boundary = params.get("boundary", "")
        # What MultiPartParser checks before it reads a byte.
        if not request.META.get("CONTENT_TYPE", "").isascii() or not MultiPartParser.boundary_re.fullmatch(boundary):
            return "A multipart/form-data body needs a valid boundary parameter in its Content-Type."
    return None


class ContentTypeMiddleware(MiddlewareMixin):
    """See the module's docstring; before anything that may read a form (CSRF's check)."""

    def process_request(self, request: HttpRequest) -> HttpResponse | None:
        refusal = content_type_refusal(request)
        if refusal is None:
            return None
        return problem_response(400, refusal, code="unreadable_body", attr="Content-Type")

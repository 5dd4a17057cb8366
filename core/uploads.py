"""Uploaded files that know the sha256 of their content, taken as they stream in.

Idempotency's fingerprint (core.idempotency) must tell two uploads apart by what
they hold, not by the name the client gave them. The digest is taken chunk by chunk
while Django's multipart parser hands the file to its upload handlers, so the file
is not read a second time to learn it, and nothing is kept but the hash's state: the
content goes where the configured handlers put it (memory for a small file, a
temporary file past FILE_UPLOAD_MAX_MEMORY_SIZE).

A view opts in with `parser_classes = [DigestingMultiPartParser, ...]`; its files then
carry the digest, read with `content_digest(file)`.
"""

import hashlib
from collections.abc import Mapping
from typing import IO, Any

from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from rest_framework.parsers import DataAndFiles, MultiPartParser

# Where a digested upload keeps its digest (hex).
DIGEST_ATTRIBUTE = "content_sha256"


class DigestingUploadHandler(FileUploadHandler):
    """Wraps one of the request's upload handlers: hashes the chunks it keeps, and
    gives the file it makes the digest of exactly those chunks.

    A handler that passes a chunk on (Django's memory handler does, for a file too
    large for memory) has not kept it, so only the handler that stores the file hashes
    it, once."""

    def __init__(self, inner: FileUploadHandler) -> None:
        super().__init__(inner.request)
        self.inner = inner
        self.chunk_size = inner.chunk_size
        self._sha256: Any = None  # hashlib's object; None between files

    def __getattr__(self, name: str) -> Any:
        # What the parser reads off a handler besides this interface (`file`, closed
        # on errors) is the wrapped handler's.
        if name == "inner":  # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    def handle_raw_input(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.handle_raw_input(*args, **kwargs)

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        self._sha256 = hashlib.sha256()
        self.inner.new_file(*args, **kwargs)  # may raise StopFutureHandlers: the hash is ready all the same

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        passed_on = self.inner.receive_data_chunk(raw_data, start)
        if passed_on is None and self._sha256 is not None:
            self._sha256.update(raw_data)
        return passed_on

    def file_complete(self, file_size: int) -> UploadedFile | None:
        file = self.inner.file_complete(file_size)
        if file is not None and self._sha256 is not None:
            setattr(file, DIGEST_ATTRIBUTE, self._sha256.hexdigest())
        self._sha256 = None
        return file

    def upload_complete(self) -> Any:
        return self.inner.upload_complete()

    def upload_interrupted(self) -> Any:
        return self.inner.upload_interrupted()


class DigestingMultiPartParser(MultiPartParser):
    """DRF's multipart parser, its files digested as they are parsed (see the module)."""

    def parse(
        self, stream: IO[Any], media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> "DataAndFiles[Any, Any]":  # generic only in the stubs
        request = (parser_context or {})["request"]
        # DRF's parser reads the handlers off the Django request; they may still be set
        # here, as its files are parsed only now.
        django_request = request._request
        django_request.upload_handlers = [DigestingUploadHandler(handler) for handler in django_request.upload_handlers]
        return super().parse(stream, media_type, parser_context)


def content_digest(file: UploadedFile) -> str:
    """The sha256 (hex) of the file's content: the one taken while it was parsed, or,
    for a file that came another way, read now in chunks (never whole in memory)."""
    digest: str | None = getattr(file, DIGEST_ATTRIBUTE, None)
    if digest is None:
        sha256 = hashlib.sha256()
        for chunk in file.chunks():
            sha256.update(chunk)
        file.seek(0)
        digest = sha256.hexdigest()
        setattr(file, DIGEST_ATTRIBUTE, digest)
    return digest

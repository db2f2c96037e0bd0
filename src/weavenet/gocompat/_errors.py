"""The template errors: one line each, in Go's wording where it matters."""

from __future__ import annotations

from weavenet.errors import WeavenetError


class TemplateError(WeavenetError):
    """A FORMAT could not be parsed or executed; the message is one line, in Go's wording where it matters.

    ``partial_output`` holds what Go would already have written to the HTTP response before an execution error
    (Go streams template output; weave then appends ``error during template execution``).
    """

    def __init__(self, message: str, partial_output: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.partial_output = partial_output


class TemplateParseError(TemplateError):
    """The template text is invalid (weave answers 400 with this message)."""


class TemplateExecError(TemplateError):
    """Executing a valid template failed (weave answers 500 ``error during template execution``)."""

"""The one exception type for bad input: a spec, a name, a shape or data."""

from __future__ import annotations


class SpecError(Exception):
    """Bad input, reported as ``<source>: <node>: <what is wrong>``.

    The CLI prints it as a single ``error:`` line and exits with code 2.
    """

    def __init__(self, message: str, node: str | None = None, source: str | None = None):
        super().__init__(message)
        self.message = message
        self.node = node
        self.source = source

    def located(self, source: str) -> "SpecError":
        """The same error, naming ``source`` if it named no file yet."""
        if self.source is None:
            self.source = source
        return self

    def __str__(self) -> str:
        parts = [self.source or "<graph>", self.node or "<spec>", self.message]
        return ": ".join(parts)


class BuildError(RuntimeError):
    """The C compiler failed or is missing, or the build cache cannot be used.

    The CLI prints its first line (and the compiler's first error) as one
    ``error:`` line and exits with code 2.
    """

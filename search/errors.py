"""Domain errors: each says what is wrong and, where there is one, the fix."""


class SpyglassError(Exception):
    """An error a user can act on; the CLI shows it as one line, never a traceback."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(SpyglassError):
    """A setting has a value that cannot work."""


class ModelUnavailable(SpyglassError):
    """The encoder's architecture or weights cannot be had."""


class ModelMismatch(SpyglassError):
    """The live index was built with another model than the one asked for."""


class NoIndex(SpyglassError):
    """Nothing has been indexed yet."""


class DatabaseNotReady(SpyglassError):
    """The catalog's schema is missing or behind the code."""


class EmptyDatabase(DatabaseNotReady):
    """The catalog has no tables yet: nothing was ever indexed into it."""


class IndexFileError(SpyglassError):
    """An index file is missing, truncated or not what the catalog says."""


class InvalidImage(SpyglassError):
    """Bytes or a file that do not decode as a supported image."""


class NotAnImage(InvalidImage):
    """Bytes in no image format Spyglass reads."""


class BadQuery(SpyglassError):
    """A search request that cannot be answered as asked."""


class UnknownItem(SpyglassError):
    """An item id the catalog does not hold."""


class ImageTooLarge(InvalidImage):
    """An image over the decompression-bomb pixel limit."""


class MediaFileError(SpyglassError):
    """A library file that may not or cannot be read: gone, changed, a link out, not a regular file."""


class ImageRefused(InvalidImage):
    """An image whose shape makes it too costly to decode or embed (an extreme aspect ratio)."""


class Transient(SpyglassError):
    """A failure that says nothing about the file: short of memory, busy, an I/O fault. Never
    remembered as a skip; the next run tries the file again."""


class ServerBusy(Transient):
    """Too much work is in flight to take this request now; it may be retried."""


class OutOfMemory(Transient):
    """The work did not fit in the memory available at that moment."""


class BadInput(SpyglassError):
    """Input files (a data set, an embeddings folder) that cannot be used as they are."""


class RunInterrupted(SpyglassError):
    """An index, reindex or import run stopped by Ctrl-C: what it kept, and that running again resumes."""

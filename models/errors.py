"""Errors of the model manager; each message names the problem and what to do.

ModelError
├── CatalogueError            a catalogue file or entry that cannot be used
├── DownloadError             one file could not be fetched (dead link, offline, unsupported source)
│   ├── ChecksumMismatchError the bytes are not the ones the catalogue names
│   └── NotEnoughSpaceError   the disk cannot hold what is about to be fetched
├── DownloadCancelledError    a person cancelled; nothing was installed
├── ImportRefusedError        an upload or folder that cannot be installed (unsafe zip, unknown layout)
└── UrlRefusedError           a URL the model manager will not fetch (not a public address, a redirect to another
                              scheme); deliberately not an OSError, so no library's retry loop swallows it
"""

from __future__ import annotations


class ModelError(Exception):
    """Base: a message a person can act on."""

    @property
    def message(self) -> str:
        return str(self)


class CatalogueError(ModelError):
    pass


class DownloadError(ModelError):
    pass


class ChecksumMismatchError(DownloadError):
    pass


class NotEnoughSpaceError(DownloadError):
    pass


class DownloadCancelledError(ModelError):
    pass


class ImportRefusedError(ModelError):
    pass


class UrlRefusedError(ModelError):
    pass

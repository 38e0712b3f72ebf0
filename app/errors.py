"""Errors the app shows to a person.

Exception tree::

    UserFacingError   a message a person can act on (bad input, unknown name, worker failure)
"""

from __future__ import annotations


class UserFacingError(Exception):
    """Raised by actions; the UI shows the message as-is (``gr.Error``), API clients receive it too."""

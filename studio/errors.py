"""The base of every user-facing error.

Why: the UI must never show a traceback. Every service raises a :class:`StudioError` subclass whose
message is a sentence for the user; pages show that message as it is.
"""


class StudioError(Exception):
    """Base for errors whose message is meant to be shown to the user as is."""

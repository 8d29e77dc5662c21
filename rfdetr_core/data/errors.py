"""The one exception a bad dataset raises.

Training on a broken dataset wastes minutes before it crashes somewhere deep in a data loader
worker, with a message about tensors instead of files. Every loader in :mod:`rfdetr_core.data`
therefore checks the folder eagerly while it is being built and raises :class:`DatasetError`
naming the file (and line or annotation) at fault, so the studio can show the message as it is.
"""

from __future__ import annotations


class DatasetError(ValueError):
    """A dataset folder that cannot be trained on, with a message meant for the user."""

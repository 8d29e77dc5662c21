"""Dataset format readers used by :mod:`studio.services.importer`."""

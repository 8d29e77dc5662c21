"""Dataset format readers used by :mod:`studio.services.data.importing.importer`."""

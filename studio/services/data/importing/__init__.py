"""Dataset import: format readers, safe zip extraction, image checks, the import report and the one-transaction writer."""

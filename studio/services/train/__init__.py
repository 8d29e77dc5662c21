"""The Augment and Train tabs: augmentation settings and preview, runs and their checkpoints, defaults, plots, the worker process."""

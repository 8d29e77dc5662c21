"""A tiny studio project for the Augment / Train tests: real SQLite, real images, the shapes dataset."""

from __future__ import annotations

from pathlib import Path

from studio.services.data.importing.importer import import_dataset
from studio.store import ProjectStore
from tests.support.training_fixtures import TINY, make_shapes_dataset

#: Settings of a run that trains in seconds: tiny Nano at 64 px, from scratch, no augmentation cost.
TINY_RUN = {
    "model_size": "Nano",
    "epochs": 2,
    "batch_size": 2,
    "grad_accum_steps": 1,
    "lr": 1e-4,
    "resolution": 64,
    "early_stopping": False,
    "use_ema": True,
    "seed": 0,
    "pretrained": "scratch",
    "num_workers": 0,
    "augment": {"multi_scale": "off", "scale_jitter": False, "horizontal_flip": 0.5},
    "model_overrides": {k: v for k, v in TINY.items() if k != "pretrain_weights"},
}


def make_project(root: Path, n: int = 4, size: int = 64) -> ProjectStore:
    """A project holding the shapes dataset (train + valid) imported through the real importer."""
    data = make_shapes_dataset(root / "shapes", n=n, size=size, same_images=False)  # images are deduplicated
    store = ProjectStore.create(root / "project", "tiny")
    import_dataset(store, data)
    return store


#: A pickle global name that is also an HTML payload: if it ever reaches a page unescaped, the image
#: fails to load and its handler sets ``window.__xss``.
XSS_GLOBAL = "<img src=x onerror=window.__xss=1>"


def write_hostile_checkpoint(path: Path, module: str = XSS_GLOBAL) -> Path:
    """A ``.pth`` whose pickle names a class in module ``module``: the safe loader refuses it and
    quotes the name in its error (the class is registered only while saving, then forgotten)."""
    import sys
    import types

    import torch

    names = [module, module.split(".")[0]]  # pickle imports the dotted parents too
    evil = type("x", (), {"__module__": module, "__qualname__": "x"})
    fake = types.ModuleType(module)
    fake.x = evil
    saved = {n: sys.modules.get(n) for n in names}
    sys.modules.update({module: fake, names[1]: types.ModuleType(names[1])})
    try:
        torch.save({"model": {}, "args": evil()}, path)
    finally:
        for n, old in saved.items():
            if old is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = old
    return path

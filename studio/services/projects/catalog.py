"""Create, list, rename, delete and open projects under a projects root folder.

A project is a folder ``<root>/<slug>/`` holding ``project.db`` and its images. The slug is derived
from the name once and never changes (renaming changes only the display name), so paths stored by
runs and exports stay valid.
"""

from __future__ import annotations

import re
import shutil
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select

from studio.errors import StudioError
from studio.services.data.classes import trainable_classes
from studio.store import DB_NAME, Annotation, Category, Image, Project, ProjectStore, StoreError
from studio.text import md_text, quote

MAX_NAME = 100
FOLDER_HINT = "The project's folder is named after it: ASCII letters, digits and dashes."


@dataclass(frozen=True)
class ProjectInfo:
    """One project's counts. ``n_classes`` counts every category; ``n_groups`` the parent categories
    that group others and are never trained (the leaf rule of :mod:`studio.services.data.classes`)."""

    slug: str
    name: str
    path: Path
    n_images: int
    n_boxes: int
    n_classes: int
    created_at: datetime
    n_groups: int = 0

    @property
    def n_trained(self) -> int:
        return self.n_classes - self.n_groups

    @property
    def classes_text(self) -> str:
        """ "3 classes (+1 group)": what the model trains on first, so a group is never counted as a class."""
        return class_count_text(self.n_trained, self.n_groups)


def class_count_text(n_trained: int, n_groups: int) -> str:
    """ "3 classes", "1 class (+1 group)", "5 classes (+3 groups)"."""
    text = f"{n_trained} class" + ("" if n_trained == 1 else "es")
    if n_groups:
        text += f" (+{n_groups} group" + ("" if n_groups == 1 else "s") + ")"
    return text


def slugify(name: str) -> str:
    """ASCII folder name from a display name ("Café Parts #2" -> "cafe-parts-2")."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:60]


def _clean_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ValueError("Please give the project a name.")
    if len(name) > MAX_NAME:
        raise ValueError(f"Project names are limited to {MAX_NAME} characters.")
    return name


def _project_dir(root: Path, slug: str) -> Path:
    if not slug or slug != slugify(slug) or not (Path(root) / slug / DB_NAME).is_file():
        raise StudioError(f"There is no project '{slug}'.")
    return Path(root) / slug


def open_store(root: Path, slug: str) -> ProjectStore:
    return ProjectStore.open(_project_dir(root, slug))


def project_info(store: ProjectStore) -> ProjectInfo:
    n_trained = len(trainable_classes(store))
    with store.session(readonly=True) as s:
        proj = s.scalars(select(Project).limit(1)).one()
        n_classes = s.scalar(select(func.count(Category.id))) or 0
        return ProjectInfo(
            slug=store.path.name,
            name=proj.name,
            path=store.path,
            n_images=s.scalar(select(func.count(Image.id))) or 0,
            n_boxes=s.scalar(select(func.count(Annotation.id)).where(Annotation.source == "gt")) or 0,
            n_classes=n_classes,
            created_at=proj.created_at,
            n_groups=n_classes - n_trained,
        )


def list_projects(root: Path) -> list[ProjectInfo]:
    """Every readable project under ``root``, newest first (unreadable folders are left out)."""
    root = Path(root)
    out = []
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        if not (d / DB_NAME).is_file():
            continue
        try:
            with ProjectStore.open(d) as store:
                out.append(project_info(store))
        except (StoreError, Exception):
            continue
    return sorted(out, key=lambda p: p.created_at, reverse=True)


def header_markdown(root: Path, slug: str | None) -> str:
    """The app header: the open project's name (escaped: it is typed by a user) and its counts."""
    info = next((p for p in list_projects(root) if p.slug == slug), None) if slug else None
    if info is None:
        return "# RF-DETR Studio\nNo project open — create or open one on the **Projects** tab."
    return (
        f"# RF-DETR Studio · {md_text(info.name, MAX_NAME)}\n"
        f"{info.n_images} images · {info.n_boxes} boxes · {info.classes_text} · folder `{info.slug}`"
    )


def folder_preview(root: Path, name: str) -> str:
    """What the folder of a project named ``name`` will be called, said before it is created.

    Why: the folder name keeps only ASCII letters, digits and dashes, so "../../etc" becomes "etc";
    the user should see that rather than find it out afterwards.
    """
    name = (name or "").strip()
    if not name:
        return FOLDER_HINT
    slug = slugify(name)
    if not slug:
        return "The name needs at least one letter or digit (it names the project's folder)."
    if (Path(root) / slug).exists():
        return f"The folder '{slug}' is already taken: choose another name."
    return f"The project's folder will be '{slug}'."


def create_project(root: Path, name: str) -> ProjectInfo:
    """Create ``<root>/<slug>``; a name whose slug is taken is refused with a clear ValueError."""
    name = _clean_name(name)
    slug = slugify(name)
    if not slug:
        raise ValueError("The project name needs at least one letter or digit.")
    path = Path(root) / slug
    if path.exists():
        raise ValueError(f"A project named {quote(name)} (folder '{slug}') already exists.")
    Path(root).mkdir(parents=True, exist_ok=True)
    with ProjectStore.create(path, name) as store:
        return project_info(store)


def rename_project(root: Path, slug: str, new_name: str) -> ProjectInfo:
    """Change the display name (the folder keeps its slug); refuses a name another project uses."""
    new_name = _clean_name(new_name)
    if any(p.name.casefold() == new_name.casefold() and p.slug != slug for p in list_projects(root)):
        raise ValueError(f"Another project is already named '{new_name}'.")
    with open_store(root, slug) as store:
        with store.session() as s:
            s.scalars(select(Project).limit(1)).one().name = new_name
        return project_info(store)


def delete_project(root: Path, slug: str) -> None:
    """Remove the project folder and everything in it (images, runs, exports)."""
    shutil.rmtree(_project_dir(root, slug))


__all__ = [
    "FOLDER_HINT",
    "ProjectInfo",
    "class_count_text",
    "create_project",
    "delete_project",
    "folder_preview",
    "header_markdown",
    "list_projects",
    "open_store",
    "project_info",
    "rename_project",
    "slugify",
]

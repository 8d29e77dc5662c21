"""``rfdetr-studio projects list|create|delete`` (the Projects page's catalog service)."""

from __future__ import annotations

import argparse
from typing import Any

from studio.commands.common import CommandError, Outcome, add_common, find_project, projects_root

NAMES = ("projects",)


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("projects", help="list, create or delete projects")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    add_common(actions.add_parser("list", help="every project with its counts"))
    create = actions.add_parser("create", help="a new, empty project")
    create.add_argument("name", help="display name (the folder is made from it)")
    add_common(create)
    delete = actions.add_parser("delete", help="delete a project with all its images, labels, runs, exports")
    delete.add_argument("project", help="folder name (slug) or display name")
    delete.add_argument("--yes", action="store_true", help="required: confirms the deletion")
    add_common(delete)
    p.set_defaults(handler=run)


def project_doc(info: Any) -> dict[str, Any]:
    return {
        "slug": info.slug,
        "name": info.name,
        "path": str(info.path),
        "images": info.n_images,
        "boxes": info.n_boxes,
        "classes": info.n_trained,
        "groups": info.n_groups,
        "created_at": info.created_at,
    }


def _line(doc: dict[str, Any]) -> str:
    return f"{doc['slug']:<24} {doc['images']:>7} images {doc['boxes']:>8} boxes {doc['classes']:>4} classes  {doc['name']}"


def run(args: argparse.Namespace) -> Outcome:
    from studio.services.projects import catalog

    root = projects_root(args)
    if args.action == "list":
        docs = [project_doc(p) for p in catalog.list_projects(root)] if root.is_dir() else []
        return Outcome(docs, "\n".join(_line(d) for d in docs) or f"No projects in {root}.")
    if args.action == "create":
        doc = project_doc(catalog.create_project(root, args.name))
        return Outcome(doc, f"Created project {doc['name']!r} in {doc['path']}")
    slug = find_project(root, args.project)
    if not args.yes:
        raise CommandError(f"Deleting {slug!r} removes all its images, labels, runs and exports: add --yes.")
    catalog.delete_project(root, slug)
    return Outcome({"deleted": slug}, f"Deleted project {slug!r}.")

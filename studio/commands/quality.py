"""``rfdetr-studio health | duplicates | next``: the data-quality answers of the Review, Data and Label
pages as JSON (issues 17, 18).

Each is one call to the service the page uses: :func:`~studio.services.review.readiness.health_report`
(suspected label mistakes + readiness verdict, keys in ``docs/health.md``),
:func:`~studio.services.data.duplicates.duplicates_report` (near-duplicate groups and train/valid
leakage) and :func:`~studio.services.label.next.next_report` (which unlabeled images to label first).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from studio.commands.common import Outcome, add_common, project_store

NAMES = ("health", "duplicates", "next")


def add_parsers(sub: Any) -> None:
    health = sub.add_parser("health", help="suspected label mistakes and 'is it good enough?' for a run")
    health.add_argument("project", help="folder name (slug) or display name")
    health.add_argument("--run", type=int, required=True, help="run id (see `runs`)")
    health.add_argument("--split", default="valid", help="split with stored predictions (default valid)")
    health.add_argument("--recall", type=float, default=0.95, help="objects the model must find (0-1)")
    health.add_argument(
        "--false-alarms-per-100", type=float, default=2.0, help="false alarms allowed per 100 images"
    )
    health.add_argument("--limit", type=int, default=50, help="at most this many suspects (default 50)")
    add_common(health)
    health.set_defaults(handler=run_health)

    dups = sub.add_parser("duplicates", help="near-duplicate images and train/valid leakage")
    dups.add_argument("project", help="folder name (slug) or display name")
    add_common(dups)
    dups.set_defaults(handler=run_duplicates)

    nxt = sub.add_parser("next", help="which unlabeled images to label first, with the reason")
    nxt.add_argument("project", help="folder name (slug) or display name")
    nxt.add_argument("--run", type=int, help="run whose predictions rank the images (default: none)")
    nxt.add_argument("-n", type=int, default=50, help="how many images (default 50)")
    add_common(nxt)
    nxt.set_defaults(handler=run_next)


def _dump(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, default=str)


def run_health(args: argparse.Namespace) -> Outcome:
    from studio.services.review.readiness import health_report

    with project_store(args) as store:
        doc = health_report(
            store,
            args.run,
            args.split,
            target_recall=args.recall,
            max_false_alarms_per_100=args.false_alarms_per_100,
            limit=args.limit,
        )
    return Outcome(doc, _dump(doc))


def run_duplicates(args: argparse.Namespace) -> Outcome:
    from studio.services.data.duplicates import duplicates_report

    with project_store(args) as store:
        doc = duplicates_report(store)
    return Outcome(doc, doc.get("message") or _dump(doc))


def run_next(args: argparse.Namespace) -> Outcome:
    from studio.services.label.next import next_report

    with project_store(args) as store:
        doc = next_report(store, args.run, args.n)
    return Outcome(doc, _dump(doc))

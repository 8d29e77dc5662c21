"""Upload a run's model to a Roboflow project version with the user's API key.

The key lives only in memory for the one ``deploy_to_roboflow`` call: it is never written to the
database or any file, and while the SDK runs it is masked in everything printed, warned or logged
(:func:`studio.services.deploy.redact.redacted`, scoped so other threads' output is left alone).
"""

from __future__ import annotations

import logging

from studio.errors import StudioError
from studio.services.deploy.history import DEPLOY_KIND, new_row, readable_error, update_row
from studio.services.deploy.model_export import load_model, run_facts
from studio.services.deploy.redact import MASK, redacted
from studio.store import ProjectStore

logger = logging.getLogger(__name__)


def _checked(api_key: str, workspace: str, project_id: str, version: int | str) -> tuple[str, str, str, int]:
    """The stripped key, workspace and project, and the version number, or a StudioError (key masked)."""
    key = (api_key or "").strip()
    workspace, project_id = (workspace or "").strip(), (project_id or "").strip()
    if not key:
        raise StudioError("Enter your Roboflow API key (Roboflow → Settings → API Keys).")
    if not workspace or not project_id:
        raise StudioError("Enter the Roboflow workspace and project ids (as in the project's URL).")
    try:
        number = int(str(version).strip())
    except ValueError:
        raise StudioError(
            f"The version must be a whole number, got '{str(version).replace(key, MASK)}'."
        ) from None
    if number < 1:
        raise StudioError("The version must be 1 or more.")
    return key, workspace, project_id, number


def deploy_run(
    store: ProjectStore,
    run_id: int,
    api_key: str,
    workspace: str,
    project_id: str,
    version: int | str,
    model_type: str | None = None,
) -> str:
    """Upload run *run_id*'s model to a Roboflow project version; returns a message for the user.

    The key is used for this call only: it is not stored, logged or put in any message.
    """
    key, workspace, project_id, number = _checked(api_key, workspace, project_id, version)
    facts = run_facts(store, run_id)
    target = {"workspace": workspace, "project": project_id, "version": number, "model_type": model_type}
    export_id = new_row(store, run_id, DEPLOY_KIND, {**target, "run": facts.name})
    update_row(store, export_id, path=f"roboflow:{workspace}/{project_id}/{number}")
    out = None
    try:
        from rfdetr_core.export import deploy_to_roboflow

        rf = load_model(facts.checkpoint)
        with redacted(key) as out:
            deploy_to_roboflow(rf, workspace, project_id, number, api_key=key, size=model_type)
    except Exception as exc:
        error = f"Deploy to Roboflow failed: {readable_error(exc)}".replace(key, MASK)
        update_row(store, export_id, status="failed", error=error)
        logger.warning("Deploy of run %s failed: %s", run_id, error)
        raise StudioError(error) from None  # no chained exception: its text may hold the key
    finally:
        if out is not None and out.getvalue().strip():
            logger.info("Roboflow deploy output: %s", out.getvalue().replace(key, MASK).strip())
    update_row(store, export_id, status="done")
    return f"Uploaded '{facts.name}' to Roboflow {workspace}/{project_id} version {number}."


__all__ = ["deploy_run"]

"""Projects, Data and Classes pages driven in headless Chromium against the real app (launch.py)."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from studio.services.projects.synthetic import LEAF_CLASSES, make_synthetic_coco

pytestmark = pytest.mark.browser


def _fill(page: Page, elem_id: str, text: str) -> None:
    page.locator(f"#{elem_id} textarea, #{elem_id} input").first.fill(text)


def _choose(page: Page, elem_id: str, option: str) -> None:
    """Pick an option of a Gradio dropdown by its visible label."""
    page.locator(f"#{elem_id} input").first.click()
    page.locator("li[data-testid=dropdown-option]", has_text=option).first.click()


def _tab(page: Page, title: str) -> None:
    page.get_by_role("tab", name=title).click()


def _coco_zip(tmp_path: Path) -> tuple[Path, int]:
    """A small Roboflow-layout COCO dataset zipped; returns the zip and its number of boxes."""
    ds = make_synthetic_coco(tmp_path / "ds", {"train": 4, "valid": 2, "test": 2}, seed=7)
    zpath = tmp_path / "widgets.zip"
    n_boxes = 0
    with zipfile.ZipFile(zpath, "w") as zf:
        for f in sorted(ds.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(ds))
                if f.name.endswith(".json"):
                    n_boxes += len(json.loads(f.read_text())["annotations"])
    return zpath, n_boxes


def test_demo_project_is_open_on_first_start(page: Page) -> None:
    expect(page.locator("#current-project")).to_contain_text("Demo shapes")
    expect(page.locator("#projects-table")).to_contain_text("demo-shapes")
    _tab(page, "Data")
    expect(page.locator("#data-page-info")).to_contain_text("of 60")
    expect(page.locator("#data-gallery img")).to_have_count(24)
    _tab(page, "Classes")
    expect(page.locator("#classes-warnings")).to_contain_text("'star' is rare")


def test_create_project_import_coco_zip_and_see_classes(page: Page, tmp_path: Path) -> None:
    zpath, n_boxes = _coco_zip(tmp_path)
    _fill(page, "projects-new-name", "Widgets")
    page.locator("#projects-create").click()
    expect(page.locator("#current-project")).to_contain_text("RF-DETR Studio · Widgets")
    expect(page.locator("#data-import-btn")).to_be_visible()  # the Data tab opened
    expect(page.locator("#data-summary")).to_contain_text("0 images")

    page.locator("#data-import-zip input[type=file]").set_input_files(str(zpath))
    expect(page.locator("#data-import-zip")).to_contain_text("widgets.zip")
    page.locator("#data-import-btn").click()
    expect(page.locator("#data-import-report")).to_contain_text("Import finished", timeout=60_000)
    expect(page.locator("#data-summary")).to_contain_text(f"8 images · {n_boxes} boxes · 8 classes")
    expect(page.locator("#current-project")).to_contain_text("RF-DETR Studio · Widgets")
    expect(page.locator("#data-gallery img")).to_have_count(8)

    page.locator("#data-export-coco").click()
    expect(page.locator("#data-export-file")).to_contain_text("widgets-coco")
    link = page.locator("#data-export-file a").first
    with page.expect_download() as dl:
        link.click()
    saved = tmp_path / "exported.zip"
    dl.value.save_as(saved)
    with zipfile.ZipFile(saved) as zf:
        exported = [n for n in zf.namelist() if n.endswith("_annotations.coco.json")]
        assert sum(len(json.loads(zf.read(n))["annotations"]) for n in exported) == n_boxes

    _choose(page, "data-filter-split", "valid")
    expect(page.locator("#data-page-info")).to_contain_text("images 1–2 of 2")
    expect(page.locator("#data-gallery img")).to_have_count(2)

    _tab(page, "Classes")
    tree = page.locator("#classes-tree")
    expect(tree).to_contain_text("shapes (group — not trained)")
    for name in LEAF_CLASSES:
        expect(tree).to_contain_text(name)
    expect(page.locator("#classes-trained")).to_contain_text("5 class(es)")
    expect(page.locator("#classes-chart .js-plotly-plot")).to_be_visible()
    expect(page.locator("#classes-table")).to_contain_text("circle")

    _tab(page, "Projects")
    row = page.locator("#projects-table").get_by_role("row", name=re.compile("widgets"))
    expect(row).to_have_text(re.compile(rf"Widgets\s*widgets\s*8\s*{n_boxes}\s*8"))
    expect(page.locator("#current-project")).to_contain_text(f"8 images · {n_boxes} boxes · 8 classes")


def test_rename_and_delete_with_confirmation(page: Page) -> None:
    _fill(page, "projects-new-name", "Scratch")
    page.locator("#projects-create").click()
    expect(page.locator("#current-project")).to_contain_text("Scratch")
    _tab(page, "Projects")
    _choose(page, "projects-select", "(scratch)")
    _fill(page, "projects-rename-name", "Scratch two")
    page.locator("#projects-rename").click()
    expect(page.locator("#projects-table")).to_contain_text("Scratch two")
    expect(page.locator("#current-project")).to_contain_text("Scratch two")

    page.locator("#projects-delete").click()
    confirm = page.locator("#projects-delete-confirm-row")
    expect(confirm).to_contain_text("cannot be undone")
    page.locator("#projects-delete-cancel").click()
    expect(confirm).to_be_hidden()
    expect(page.locator("#projects-table")).to_contain_text("scratch")

    page.locator("#projects-delete").click()
    page.locator("#projects-delete-confirm").click()
    expect(page.locator("#projects-table")).not_to_contain_text("scratch")
    expect(page.locator("#current-project")).not_to_contain_text("Scratch")


def test_bad_import_shows_a_message_not_a_traceback(page: Page, tmp_path: Path) -> None:
    _tab(page, "Data")
    _fill(page, "data-import-path", str(tmp_path / "missing-folder"))
    page.locator("#data-import-btn").click()
    expect(page.locator("#data-import-report")).to_contain_text("Import aborted")
    expect(page.locator("body")).to_contain_text("nothing was changed")
    assert "Traceback" not in page.content()


def test_edit_classes(page: Page) -> None:
    _fill(page, "projects-new-name", "Class edits")
    page.locator("#projects-create").click()
    expect(page.locator("#current-project")).to_contain_text("Class edits")
    _tab(page, "Classes")
    expect(page.locator("#classes-warnings")).to_contain_text("no classes")
    for name in ["vehicle", "car"]:
        _fill(page, "classes-add-name", name)
        if name == "car":
            _choose(page, "classes-add-parent", "vehicle")
        page.locator("#classes-add-btn").click()
        expect(page.locator("#classes-tree")).to_contain_text(name)
    expect(page.locator("#classes-tree")).to_contain_text("vehicle (group — not trained)")
    expect(page.locator("#classes-trained")).to_contain_text("1 class(es)")
    expect(page.locator("#classes-warnings")).to_contain_text("'car' has no boxes")

    _choose(page, "classes-rename-select", "car")
    _fill(page, "classes-rename-name", "automobile")
    page.locator("#classes-rename-btn").click()
    expect(page.locator("#classes-tree")).to_contain_text("automobile")

    _fill(page, "classes-add-name", "Automobile")  # duplicate (case-insensitive): a clear error
    page.locator("#classes-add-btn").click()
    expect(page.locator("body")).to_contain_text("already exists")

    _choose(page, "classes-delete-select", "vehicle")
    page.locator("#classes-delete-btn").click()
    expect(page.locator("#classes-delete-confirm-row")).to_contain_text("Sub-classes move up")
    page.locator("#classes-delete-confirm").click()
    expect(page.locator("#classes-tree")).not_to_contain_text("vehicle")
    expect(page.locator("#classes-trained")).to_contain_text(re.compile(r"1 class\(es\).*automobile"))

"""Projects, Data and Classes pages driven in headless Chromium against the real app (launch.py)."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from studio.services.projects.synthetic import LEAF_CLASSES, make_synthetic_coco
from tests.support.duplicate_fixtures import leaky_project
from tests.support.held_requests import first_join_held

pytestmark = pytest.mark.browser


def _fill(page: Page, elem_id: str, text: str) -> None:
    page.locator(f"#{elem_id} textarea, #{elem_id} input").first.fill(text)


def _choose(page: Page, elem_id: str, option: str) -> None:
    """Pick an option of a Gradio dropdown by its visible label."""
    page.locator(f"#{elem_id} input").first.click()
    page.locator("li[data-testid=dropdown-option]", has_text=option).first.click()


def _type_pick(page: Page, elem_id: str, option: str) -> None:
    """Pick a dropdown option from the keyboard (type to filter, Enter): one ``input`` event."""
    box = page.locator(f"#{elem_id} input").first
    box.press("Control+a")
    box.press_sequentially(option)
    box.press("Enter")


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
    expect(page.locator("#data-summary")).to_contain_text(
        f"8 images · {n_boxes} boxes · 5 classes (+3 groups)"
    )
    report = page.locator("#data-import-report")
    expect(report).to_contain_text("Source: widgets.zip")  # the upload's own name, not the server's temp path
    expect(report).not_to_contain_text("/tmp/")
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
    expect(row).to_have_text(re.compile(rf"Widgets\s*widgets\s*8\s*{n_boxes}\s*5 classes \(\+3 groups\)"))
    expect(page.locator("#current-project")).to_contain_text(f"8 images · {n_boxes} boxes")


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


def _open_project(page: Page, slug: str) -> None:
    """Projects tab: pick ``slug`` and open it (the app switches to Data). A new browser opens the newest
    project, so tests that need the demo open it."""
    expect(page.locator("#current-project")).not_to_contain_text("No project open")
    _tab(page, "Projects")
    _choose(page, "projects-select", f"({slug})")
    page.locator("#projects-open").click()
    expect(page.locator("#data-import-btn")).to_be_visible()


def test_header_counts_trained_classes_and_groups_apart(page: Page) -> None:
    # the demo has 5 trained classes under 3 groups: "8 classes" counted the groups as classes
    _open_project(page, "demo-shapes")
    expect(page.locator("#current-project")).to_contain_text("5 classes (+3 groups)")
    _tab(page, "Data")
    expect(page.locator("#data-summary")).to_contain_text("5 classes (+3 groups)")


def test_two_quick_split_picks_end_on_the_last(page: Page) -> None:
    """A dropdown pick sends ``input`` twice (select, blur); with the default trigger mode a second pick
    made while the first request runs was dropped, leaving "test" shown over the train gallery. The
    first request is held until the second pick was made, so the overlap is certain."""
    _open_project(page, "demo-shapes")
    info = page.locator("#data-page-info")
    expect(info).to_contain_text("of 60")
    # Keyboard picks send one request each. The first is held until the second pick was made, so
    # "train" is certainly still being served (on the page before the fix "test" was then dropped).
    # Mouse picks are not held: a mouse pick sends two requests at once, and holding only the first
    # lets the second overtake it (an order the server never sees without the hold).
    page.locator("#data-filter-split input").first.click()
    with first_join_held(page) as held:
        _type_pick(page, "data-filter-split", "train")
        held.wait_held()
        _type_pick(page, "data-filter-split", "test")
        expect(page.locator("#data-filter-split input")).to_have_value("test")
        held.release()
    expect(info).to_contain_text("images 1–8 of 8")
    expect(page.locator("#data-gallery img")).to_have_count(8)
    expect(page.locator("#data-filter-split input")).to_have_value("test")
    _choose(page, "data-filter-split", "valid")
    _choose(page, "data-filter-split", "All splits")
    expect(info).to_contain_text("images 1–24 of 60")
    _tab(page, "Classes")
    _tab(page, "Data")  # coming back to the tab keeps the filters and what they show
    expect(info).to_contain_text("images 1–24 of 60")
    expect(page.locator("#data-filter-split input")).to_have_value("All splits")


def test_opening_another_project_clears_the_import_panel(page: Page, tmp_path: Path) -> None:
    zpath, _ = _coco_zip(tmp_path)
    _fill(page, "projects-new-name", "Switch A")
    page.locator("#projects-create").click()
    expect(page.locator("#current-project")).to_contain_text("Switch A")
    page.locator("#data-import-zip input[type=file]").set_input_files(str(zpath))
    uploaded = re.compile(r"widgets\s*\.zip")  # the upload shows the stem and the extension apart
    expect(page.locator("#data-import-zip")).to_contain_text(uploaded)
    page.locator("#data-import-btn").click()
    expect(page.locator("#data-import-report")).to_contain_text("Import finished", timeout=60_000)
    _choose(page, "data-filter-split", "valid")
    expect(page.locator("#data-page-info")).to_contain_text("of 2")

    _open_project(page, "demo-shapes")
    expect(page.locator("#data-page-info")).to_contain_text("images 1–24 of 60")
    expect(page.locator("#data-import-report")).not_to_contain_text("Import finished")
    expect(page.locator("#data-import-zip")).not_to_contain_text(uploaded)
    expect(page.locator("#data-filter-split input")).to_have_value("All splits")


CHART_JS = """() => {
    const plot = document.querySelector('#classes-chart .js-plotly-plot');
    if (!plot) return {traces: 0, bars: 0, svg_width: 0, box_width: 0};
    const svg = plot.querySelector('svg.main-svg');
    return {traces: plot.querySelectorAll('.trace').length, bars: plot.querySelectorAll('.point').length,
            svg_width: Number(svg && svg.getAttribute('width')),
            box_width: Math.round(plot.getBoundingClientRect().width)};
}"""


def _chart_state(page: Page) -> dict:
    """The plotly DOM of the Classes chart: traces and bars drawn, and the drawn width vs. the box."""
    return page.evaluate(CHART_JS)


def test_class_chart_is_drawn_at_full_size_after_a_project_switch(page: Page) -> None:
    """Refreshed while its tab was hidden, the chart was drawn at plotly's fallback size (or blank) and
    never redrawn when the tab was shown again."""
    _open_project(page, "demo-shapes")
    _tab(page, "Classes")
    expect(page.locator("#classes-chart .js-plotly-plot .trace").first).to_be_attached()
    _tab(page, "Projects")
    _fill(page, "projects-new-name", "Chart B")
    page.locator("#projects-create").click()
    expect(page.locator("#current-project")).to_contain_text("Chart B")
    _open_project(page, "demo-shapes")
    expect(page.locator("#current-project")).to_contain_text("Demo shapes")
    _tab(page, "Classes")
    try:  # the drawn width catches up with the box once the chart is redrawn visible
        page.wait_for_function(
            f"() => {{ const s = ({CHART_JS})(); return s.traces > 0 && Math.abs(s.svg_width - s.box_width) <= 2; }}",
            timeout=15_000,
        )
    except PlaywrightTimeoutError:
        pass  # the assertions below say what was drawn
    state = _chart_state(page)
    assert state["traces"] == 6 and state["bars"] == 30, state  # 3 splits x (boxes, images); 5 classes
    assert abs(state["svg_width"] - state["box_width"]) <= 2, state
    expect(page.locator("#classes-warnings")).to_contain_text("Warning: 'star' is rare")


def test_project_name_says_which_folder_it_becomes(page: Page) -> None:
    name_box = page.locator("#projects-new-name")
    expect(name_box).to_contain_text("ASCII letters, digits and dashes")
    _fill(page, "projects-new-name", "../../etc")
    expect(name_box).to_contain_text("The project's folder will be 'etc'.")
    page.locator("#projects-create").click()
    expect(page.locator("body")).to_contain_text("in the folder 'etc'")
    expect(page.locator("#current-project")).to_contain_text("../../etc")
    _tab(page, "Projects")
    expect(page.locator("#projects-table")).to_contain_text("etc")
    _fill(page, "projects-new-name", "ETC")
    expect(name_box).to_contain_text("The folder 'etc' is already taken")


def test_duplicates_panel_shows_leakage_and_fixes_it(page: Page, studio_server, tmp_path: Path) -> None:
    """Issue 18: planted near-copies across splits are shown as leakage (Data panel and Classes line);
    "move the group into one split" and "keep one" fix it."""
    store, _ids = leaky_project(tmp_path, project_dir=studio_server.projects_dir / "dup-leaky")
    store.close()
    page.reload()
    page.wait_for_selector("#studio-tabs")
    _open_project(page, "dup-leaky")
    _tab(page, "Classes")
    leakage = page.locator("#classes-leakage")
    expect(leakage).to_contain_text("2 validation images have a near-copy in train;")
    expect(leakage).to_contain_text("mAP may be optimistic")
    _tab(page, "Data")
    summary = page.locator("#data-dup-summary")
    page.locator("#data-dup-find").click()
    expect(summary).to_contain_text("3 group(s) of near-duplicates (7 of 19 images)")
    expect(page.locator("#data-dup-gallery img")).to_have_count(3)  # leakage groups first: leak0..2
    expect(page.locator("#data-dup-gallery")).to_contain_text("leak1.png · valid · LEAKAGE")
    _choose(page, "data-dup-split", "valid")
    page.locator("#data-dup-move-btn").click()
    expect(summary).to_contain_text("Moved 1 image(s) to valid.")
    expect(summary).to_contain_text("1 test image has a near-copy in train")
    expect(summary).not_to_contain_text("validation")
    _tab(page, "Classes")
    expect(leakage).to_contain_text("1 test image has a near-copy in train")
    expect(leakage).not_to_contain_text("validation")
    _tab(page, "Data")
    expect(page.locator("#data-dup-gallery")).to_contain_text("test1.png · test · LEAKAGE")
    _choose(page, "data-dup-keep", "test0.png")
    page.locator("#data-dup-keep-btn").click()
    expect(summary).to_contain_text("Deleted 1 image(s).")
    expect(summary).to_contain_text("No leakage: every group is within one split.")
    expect(page.locator("#data-page-info")).to_contain_text("of 18")
    _tab(page, "Classes")
    expect(leakage).to_have_text("")

"""Label page driven in headless Chromium against the real app: draw, class, save, reload, conflicts."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from studio.services.projects.catalog import open_store
from studio.store.models import Annotation, Category, Image
from tests.support.held_requests import first_join_held

pytestmark = pytest.mark.browser
DEMO = "demo-shapes"


def _open_label_tab(page: Page) -> None:
    """Open the demo project (other tests create projects) and its Label tab at image 1."""
    page.locator("#projects-select input").first.click()
    page.locator("li[data-testid=dropdown-option]", has_text=f"({DEMO})").first.click()
    page.locator("#projects-open").click()
    expect(page.locator("#current-project")).to_contain_text("Demo shapes")
    page.get_by_role("tab", name="Label").click()
    _settle(page)
    expect(page.locator("#label-position")).to_have_text(re.compile(r"1 / \d+"))


def _settle(page: Page) -> None:
    """Wait until the Label view has no pending update (selecting a tab reloads it; a click sent
    before that reload finished would be undone by it). Gradio marks pending outputs client-side at
    once, so a short pause is enough for the marker to appear."""
    page.wait_for_timeout(300)
    tracker = page.locator("#label-position [data-testid=status-tracker]")
    expect(tracker).to_have_class(re.compile(r"\bhide\b"))


def _go_to(page: Page, position: int) -> None:
    for i in range(2, position + 1):
        page.locator("#label-next").click()
        expect(page.locator("#label-position")).to_have_text(re.compile(rf"{i} / \d+"))


def _draw_box(page: Page, dx: int = 0) -> tuple[float, float]:
    """Switch the editor to create mode and drag a box with the mouse near the image centre.

    Returns the screen point of its bottom-right corner."""
    page.locator("#label-editor button[title^='Create box']").click()
    bb = page.locator("#label-editor canvas").bounding_box()
    assert bb is not None
    cx, cy = bb["x"] + bb["width"] / 2 + dx, bb["y"] + bb["height"] / 2
    page.mouse.move(cx - 60, cy - 50)
    page.mouse.down()
    page.mouse.move(cx - 30, cy - 20, steps=4)
    page.mouse.move(cx, cy, steps=4)
    page.mouse.up()
    return cx, cy


def _set_class(page: Page, x: float, y: float, name: str) -> None:
    """Double-click the box at (x, y) in move mode and pick its class in the editor's dialog."""
    page.locator("#label-editor button[title^='Drag boxes']").click()
    page.mouse.dblclick(x, y)
    dialog = page.locator("#label-editor #model-box-edit")
    dialog.locator("input[aria-label=Label]").click()
    page.locator("#label-editor ul.options li").filter(has_text=name).first.click()
    expect(dialog.locator("input[aria-label=Label]")).to_have_value(name)
    dialog.get_by_role("button", name="OK").click()
    expect(dialog).to_be_hidden()


def _boxes_in_store(projects_dir, image_name: str) -> list[tuple[str, float, float]]:
    with open_store(projects_dir, DEMO) as store, store.session(readonly=True) as s:
        rows = s.execute(
            select(Category.name, Annotation.w, Annotation.h)
            .join(Annotation, Annotation.category_id == Category.id)
            .join(Image, Image.id == Annotation.image_id)
            .where(Image.original_name == image_name, Annotation.source == "gt")
        ).all()
    return [tuple(r) for r in rows]


def _image_name(page: Page) -> str:
    return page.locator("#label-image-info strong").first.inner_text()


def test_draw_box_set_class_save_and_reload(page: Page, studio_server) -> None:
    _open_label_tab(page)
    _go_to(page, 2)
    name = _image_name(page)
    info = page.locator("#label-image-info")
    n_before = int(re.search(r"(\d+) box\(es\)", info.inner_text()).group(1))
    stored_before = Counter(c for c, _w, _h in _boxes_in_store(studio_server.projects_dir, name))
    assert sum(stored_before.values()) == n_before
    expect(page.locator("#label-shortcuts")).to_contain_text("next")

    page.locator("body").press("2")  # keyboard shortcut: class 2
    radios = page.locator("#label-class input[type=radio]")
    expect(radios.nth(1)).to_be_checked()

    cls_name = page.locator("#label-class label").nth(2).inner_text().split("·")[-1].strip()
    cx, cy = _draw_box(page)  # labelled "(new box)": it would get class 2 on save…
    _set_class(page, cx - 40, cy - 30, cls_name)  # …but we give it class 3 in the editor
    page.locator("#label-save").click()
    expect(page.locator("#label-message")).to_contain_text("Saved: 1 added")
    expect(info).to_contain_text(f"{n_before + 1} box(es)")
    stored = _boxes_in_store(studio_server.projects_dir, name)
    assert Counter(c for c, _w, _h in stored) - stored_before == Counter({cls_name: 1})
    assert any(c == cls_name and w > 20 and h > 20 for c, w, h in stored)  # drawn ~60x50 screen px

    page.reload()
    page.wait_for_selector("#studio-tabs")
    _open_label_tab(page)
    _go_to(page, 2)
    expect(page.locator("#label-image-info")).to_contain_text(name)
    expect(page.locator("#label-image-info")).to_contain_text(f"{n_before + 1} box(es)")


def test_two_tabs_second_save_is_refused(page: Page, browser, studio_server) -> None:
    other_ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    other = other_ctx.new_page()
    other.goto(studio_server.url)
    other.wait_for_selector("#studio-tabs")
    try:
        for p in (page, other):
            _open_label_tab(p)
            _go_to(p, 3)
        name = _image_name(page)
        assert _image_name(other) == name
        n_before = len(_boxes_in_store(studio_server.projects_dir, name))

        _draw_box(page, dx=-40)
        page.locator("#label-save").click()
        expect(page.locator("#label-message")).to_contain_text("Saved: 1 added")

        _draw_box(other, dx=60)
        other.locator("#label-save").click()
        msg = other.locator("#label-message")
        expect(msg).to_contain_text("Not saved")
        expect(msg).to_contain_text("changed this image since you opened it")
        # the refused tab now shows the current state (the first tab's box), and nothing was overwritten
        expect(other.locator("#label-image-info")).to_contain_text(f"{n_before + 1} box(es)")
        assert len(_boxes_in_store(studio_server.projects_dir, name)) == n_before + 1

        # moving on from the refused tab does not save its stale edit either
        other.locator("#label-next").click()
        expect(other.locator("#label-position")).to_have_text(re.compile(r"4 / \d+"))
        assert len(_boxes_in_store(studio_server.projects_dir, name)) == n_before + 1
    finally:
        other_ctx.close()


def test_leaving_the_tab_saves_the_drawn_box(page: Page, studio_server) -> None:
    _open_label_tab(page)
    _go_to(page, 5)
    name = _image_name(page)
    n_before = len(_boxes_in_store(studio_server.projects_dir, name))
    _draw_box(page)
    page.get_by_role("tab", name="Data").click()  # no Save pressed: leaving the tab saves
    expect(page.locator("#data-gallery")).to_be_visible()
    for _ in range(100):
        if len(_boxes_in_store(studio_server.projects_dir, name)) == n_before + 1:
            break
        page.wait_for_timeout(100)
    assert len(_boxes_in_store(studio_server.projects_dir, name)) == n_before + 1
    page.get_by_role("tab", name="Label").click()
    _settle(page)
    expect(page.locator("#label-image-info")).to_contain_text(name)
    expect(page.locator("#label-image-info")).to_contain_text(f"{n_before + 1} box(es)")


def _no_error_badges(page: Page) -> None:
    """No component of the Label tab shows Gradio's red "Error" status."""
    expect(page.locator("#tab-label span.error:visible")).to_have_count(0)
    expect(page.locator("#tab-label").get_by_text("Error", exact=True)).to_have_count(0)


def test_undo_right_after_a_reload_only_says_so(page: Page, studio_server) -> None:
    """Issue 19 #1: a fresh tab has no undo history; Undo must not break the editor."""
    _open_label_tab(page)
    page.reload()
    page.wait_for_selector("#studio-tabs")
    _open_label_tab(page)
    _go_to(page, 6)
    name = _image_name(page)
    info = page.locator("#label-image-info")
    n_before = len(_boxes_in_store(studio_server.projects_dir, name))
    page.locator("#label-undo").click()
    expect(page.locator("#label-message")).to_have_text("Nothing to undo on this image.")
    _no_error_badges(page)
    expect(info).to_contain_text(name)
    expect(page.locator("#label-editor canvas")).to_be_visible()
    # the editor still takes edits, and Undo then undoes that save
    _draw_box(page)
    page.locator("#label-save").click()
    expect(page.locator("#label-message")).to_contain_text("Saved: 1 added")
    assert len(_boxes_in_store(studio_server.projects_dir, name)) == n_before + 1
    page.locator("#label-undo").click()
    expect(page.locator("#label-message")).to_contain_text("Undone: 0 added, 0 changed, 1 deleted")
    expect(info).to_contain_text(f"{n_before} box(es)")
    assert len(_boxes_in_store(studio_server.projects_dir, name)) == n_before
    _no_error_badges(page)
    # issue 19 #7: the page names the user's file, never the stored (hash) file name
    with open_store(studio_server.projects_dir, DEMO) as store, store.session(readonly=True) as s:
        stored = s.scalars(select(Image.file_name).where(Image.original_name == name)).one()
    assert stored.rsplit("/", 1)[-1].split(".")[0] not in page.locator("#tab-label").inner_text()


def _type_pick(page: Page, elem_id: str, option: str) -> None:
    """Pick a dropdown option from the keyboard (type to filter, Enter): as fast as a user can."""
    box = page.locator(f"#{elem_id} input").first
    box.press("Control+a")
    box.press_sequentially(option)
    box.press("Enter")


def test_two_quick_filter_picks_end_on_the_last_pick(page: Page, studio_server) -> None:
    """Issue 19 #2: a pick made while the previous one is still being served is not dropped. The first
    pick's request is held until the second pick was made (on the page before the fix, whose filters
    used the default trigger mode, the second pick was dropped and the queue stayed on "valid")."""
    _open_label_tab(page)
    with open_store(studio_server.projects_dir, DEMO) as store, store.session(readonly=True) as s:
        n_test = len(s.scalars(select(Image.id).where(Image.split == "test")).all())
        n_valid = len(s.scalars(select(Image.id).where(Image.split == "valid")).all())
    assert n_test and n_valid and n_test != n_valid
    page.locator("#label-filter-split input").first.click()
    with first_join_held(page) as held:  # "valid" is certainly still being served when "test" is picked
        _type_pick(page, "label-filter-split", "valid")
        held.wait_held()
        _type_pick(page, "label-filter-split", "test")
        expect(page.locator("#label-filter-split input").first).to_have_value("test")
        held.release()
    _settle(page)
    expect(page.locator("#label-position")).to_have_text(f"1 / {n_test}")
    expect(page.locator("#label-split").get_by_role("radio", name="test", exact=True)).to_be_checked()
    _no_error_badges(page)
    page.locator("#label-next").click()
    expect(page.locator("#label-position")).to_have_text(f"2 / {n_test}")


def test_most_useful_first_order_shows_a_reason_per_image(page: Page, studio_server) -> None:
    """Issue 18: the queue-order picker reorders the queue and each image says why it is there."""
    _open_label_tab(page)
    reason = page.locator("#label-next-reason")
    expect(reason).to_have_text("")
    page.locator("#label-queue-order input").first.click()
    page.locator("li[data-testid=dropdown-option]", has_text="Most useful first (diversity)").first.click()
    _settle(page)
    expect(reason).to_contain_text("Why this image next:")
    expect(page.locator("#label-position")).to_have_text(re.compile(r"1 / \d+"))
    first = _image_name(page)
    page.locator("#label-next").click()
    expect(page.locator("#label-position")).to_have_text(re.compile(r"2 / \d+"))
    expect(reason).to_contain_text("Why this image next:")
    assert _image_name(page) != first
    _no_error_badges(page)
    page.locator("#label-queue-order input").first.click()
    page.locator("li[data-testid=dropdown-option]", has_text="File order").first.click()
    _settle(page)
    expect(reason).to_have_text("")

"""Project catalog wording on real projects: class counts that do not count groups, the header, and the
folder a name becomes (said before the project is created)."""

from __future__ import annotations

from pathlib import Path

from studio.services.data.classes import add_class
from studio.services.projects import catalog as svc


def test_class_count_text_counts_groups_apart() -> None:
    assert svc.class_count_text(3, 1) == "3 classes (+1 group)"
    assert svc.class_count_text(5, 3) == "5 classes (+3 groups)"
    assert svc.class_count_text(1, 0) == "1 class"
    assert svc.class_count_text(0, 0) == "0 classes"


def test_project_info_and_header_say_trained_classes_and_groups(tmp_path: Path) -> None:
    info = svc.create_project(tmp_path, "Cells <b>x</b>")
    with svc.open_store(tmp_path, info.slug) as store:
        cells = add_class(store, "cells")
        for name in ["RBC", "WBC", "Platelets"]:
            add_class(store, name, parent_id=cells)
        info = svc.project_info(store)
    assert (info.n_classes, info.n_groups, info.n_trained) == (4, 1, 3)
    assert info.classes_text == "3 classes (+1 group)"
    header = svc.header_markdown(tmp_path, info.slug)
    assert "3 classes (+1 group)" in header and "4 classes" not in header
    assert "&lt;b&gt;x&lt;/b&gt;" in header and "<b>" not in header  # the typed name is escaped
    assert "No project open" in svc.header_markdown(tmp_path, None)


def test_folder_preview_says_what_the_folder_will_be(tmp_path: Path) -> None:
    assert svc.folder_preview(tmp_path, "../../etc") == "The project's folder will be 'etc'."
    assert svc.folder_preview(tmp_path, "") == svc.FOLDER_HINT
    assert "at least one letter or digit" in svc.folder_preview(tmp_path, "../..")
    info = svc.create_project(tmp_path, "../../etc")
    assert info.path == tmp_path / "etc" and info.name == "../../etc"
    assert "already taken" in svc.folder_preview(tmp_path, "ETC")

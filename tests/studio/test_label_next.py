"""'Label these next' (issue 18): uncertainty + rare-class boost + diversity on a real project with
stored predictions; planted rare-class images rank in the top 20 %, no two members of a planted
duplicate group in the top 10, with or without a run."""

from __future__ import annotations

import json
from pathlib import Path

from studio.services.label import labeling as lab
from studio.services.label import next as nxt
from studio.store.db import ProjectStore
from studio.store.models import Annotation, Category, Image, Prediction, Run
from tests.support.duplicate_fixtures import COPY_KINDS, add_image, planted_copy, scenes

N_DISTINCT, N_GROUPS, N_RARE = 40, 5, 4


def _project(tmp: Path) -> tuple[ProjectStore, dict[str, list], int]:
    """10 labeled images (30 circles, 1 star), 40 distinct unlabeled scenes (4 of them predicted to hold
    a star), 5 groups of 3 near-copies whose predictions are all uncertain (an uncertainty-only order
    would put the 15 copies first)."""
    store = ProjectStore.create(tmp / "proj", "Next")
    src = tmp / "src"
    src.mkdir()
    ims = scenes(10 + N_DISTINCT + N_GROUPS, seed=31, size=(160, 120))
    ids: dict[str, list] = {"labeled": [], "distinct": [], "rare": [], "groups": []}
    with store.session() as s:
        circle, star = Category(name="circle"), Category(name="star")
        run = Run(name="r1", model_size="nano", status="completed")
        s.add_all([circle, star, run])
        s.flush()
        for k in range(10):
            i = add_image(store, s, src, f"lab{k}.png", ims[k], "train")
            s.get_one(Image, i).status = "labeled"
            for b in range(3 if k else 4):
                cat = star if (k, b) == (0, 3) else circle
                s.add(Annotation(image_id=i, category_id=cat.id, x=5 + 10 * b, y=5, w=8, h=8))
            ids["labeled"].append(i)
        for k in range(N_GROUPS):
            base = ims[10 + N_DISTINCT + k]
            members = [base] + [planted_copy(base, kind) for kind in COPY_KINDS[:2]]
            ids["groups"].append(
                [add_image(store, s, src, f"g{k}-{m}.png", im, None) for m, im in enumerate(members)]
            )
        for k in range(N_DISTINCT):
            ids["distinct"].append(add_image(store, s, src, f"d{k}.png", ims[10 + k], None))
        ids["rare"] = ids["distinct"][5 : 5 + N_RARE * 8 : 8]

        def pred(image_id: int, cat: Category, score: float, x: float = 10) -> Prediction:
            return Prediction(
                run_id=run.id,
                image_id=image_id,
                category_id=cat.id,
                class_index=0,
                checkpoint="best",
                x=x,
                y=10,
                w=30,
                h=30,
                score=score,
            )

        for i in ids["distinct"]:
            s.add(pred(i, star, 0.65) if i in ids["rare"] else pred(i, circle, 0.95))  # outside the band
        for group in ids["groups"]:
            for i in group:
                s.add_all([pred(i, circle, 0.4, x) for x in (5, 60, 110)])
        run_id = run.id
    return store, ids, run_id


def test_signal_band_mass_and_ambiguity() -> None:
    assert (
        nxt.band_weight(0.4) == 1.0 and abs(nxt.band_weight(0.2) - 0.5) < 1e-9 and nxt.band_weight(0.7) == 0.0
    )
    rarity = {"a": 0.0, "b": 1.0}
    sig = nxt.image_signal(
        [("a", 0, 0, 10, 10, 0.5), ("b", 0.5, 0, 10, 10, 0.45), ("a", 50, 50, 5, 5, 0.9)], rarity
    )
    assert sig.n_uncertain == 2 and sig.ambiguous == [("a", "b")] and sig.rare_class == "b"
    calm = nxt.image_signal([("a", 0, 0, 10, 10, 0.95)], rarity)
    assert calm.utility == 0.0 and sig.utility > 2.0


def test_rare_first_and_no_duplicates_on_top_with_a_run(tmp_path: Path) -> None:
    store, ids, run_id = _project(tmp_path)
    todo = lab.queue(store, status="unlabeled")
    ranked = nxt.rank_images(store, todo, run_id)
    order = [r.image_id for r in ranked]
    assert sorted(order) == sorted(todo)
    top20 = order[: len(order) // 5]
    assert set(ids["rare"]) <= set(top20), [order.index(i) for i in ids["rare"]]
    top10 = set(order[:10])
    for group in ids["groups"]:
        assert len(top10 & set(group)) <= 1, group
    by_id = {r.image_id: r for r in ranked}
    assert "rare class 'star'" in by_id[ids["rare"][0]].reason
    copies = [i for g in ids["groups"] for i in g[1:]]
    assert min(order.index(i) for i in copies) >= len(order) - 10  # copies of placed images come last
    assert any("near-copy of an image earlier" in by_id[i].reason for i in copies)
    assert nxt.rank_images(store, todo, run_id) == ranked  # deterministic
    store.close()


def test_diversity_alone_without_a_run(tmp_path: Path) -> None:
    store, ids, _run = _project(tmp_path)
    todo = lab.queue(store, status="unlabeled")
    ranked = nxt.rank_images(store, todo)
    order = [r.image_id for r in ranked]
    assert order[0] == min(todo)
    for group in ids["groups"]:
        assert len(set(order[:10]) & set(group)) <= 1
    assert (
        "first of its kind" in ranked[0].reason and "unlike the images before it" in ranked[1].reason.lower()
    )
    store.close()


def test_queue_order_and_reasons(tmp_path: Path) -> None:
    store, ids, run_id = _project(tmp_path)
    order = nxt.order_value(run_id)
    assert nxt.parse_order(order) == (True, run_id) and nxt.parse_order("file") == (False, None)
    plain = lab.queue(store)
    useful = lab.queue(store, order=order)
    assert sorted(useful) == sorted(plain) and useful != plain
    assert useful[-10:] == ids["labeled"]  # labeled images keep their place after the unlabeled ones
    assert "rare class" in nxt.reason_for(store, order, ids["rare"][1])
    assert nxt.reason_for(store, order, ids["labeled"][0]).startswith("Already labeled")
    assert nxt.reason_for(store, "file", ids["rare"][1]) == ""
    report = nxt.next_report(store, run_id, n=5)
    assert json.loads(json.dumps(report)) == report and len(report["images"]) == 5
    assert report["n_unlabeled"] == N_DISTINCT + 3 * N_GROUPS
    store.close()

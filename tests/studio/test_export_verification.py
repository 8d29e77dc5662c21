"""What the Export page shows of a verification: the result panel's HTML is exactly what the page
rendered before the restructuring (expected strings recorded from it), with file-derived text escaped."""

from __future__ import annotations

import pytest

from studio.services.deploy.verification import result_html

FULL = {
    "map_pytorch": 0.51234,
    "map_exported": 0.51,
    "map50_pytorch": 0.9,
    "map50_exported": 0.89,
    "latency_pytorch_ms": 12.34,
    "latency_exported_ms": 5.5,
    "map_images": 10,
    "detections_matched": 30,
    "detections_compared": 30,
    "max_abs_diff": 1.2e-05,
    "size_mb": 12.3,
    "export_seconds": 4.56,
    "warnings": ["needs Flex ops ['FlexErf']"],
}
CASES = [
    (
        FULL,
        "done",
        None,
        "<div class='export-verdict ok'>✔ Verified: the exported model reproduces the PyTorch model.</div><table class='export-compare'><tr><th></th><th>PyTorch</th><th>exported</th></tr><tr><td>mAP@50:95</td><td>0.5123</td><td>0.5100</td></tr><tr><td>mAP@50</td><td>0.9000</td><td>0.8900</td></tr><tr><td>median latency (ms)</td><td>12.3</td><td>5.5</td></tr></table><div class='export-extra'>mAP on 10 validation images · top detections matched 30/30 · max |Δ| 1.20e-05 · 12.3 MB · exported in 4.6 s</div><ul><li>needs Flex ops ['FlexErf']</li></ul>",
    ),
    (
        {"failures": ["max abs diff of boxes 0.2 > 0.001", "a <b> & c"], "max_abs_diff": 0.0},
        "failed",
        None,
        "<div class='export-verdict bad'>✖ max abs diff of boxes 0.2 &gt; 0.001; a &lt;b&gt; &amp; c — the zip holds the full report; do not deploy it without reading it.</div><table class='export-compare'><tr><th></th><th>PyTorch</th><th>exported</th></tr><tr><td>mAP@50:95</td><td>—</td><td>—</td></tr><tr><td>mAP@50</td><td>—</td><td>—</td></tr><tr><td>median latency (ms)</td><td>—</td><td>—</td></tr></table><div class='export-extra'>max |Δ| 0.00e+00</div>",
    ),
    (
        {},
        "failed",
        "Loading the checkpoint failed: x <y>",
        "<div class='export-verdict bad'>✖ Loading the checkpoint failed: x &lt;y&gt; — the zip holds the full report; do not deploy it without reading it.</div><table class='export-compare'><tr><th></th><th>PyTorch</th><th>exported</th></tr><tr><td>mAP@50:95</td><td>—</td><td>—</td></tr><tr><td>mAP@50</td><td>—</td><td>—</td></tr><tr><td>median latency (ms)</td><td>—</td><td>—</td></tr></table><div class='export-extra'></div>",
    ),
]


@pytest.mark.parametrize(
    "details, status, error, expected", CASES, ids=["verified", "failed", "export-error"]
)
def test_result_panel_html_is_unchanged(details, status, error, expected):
    assert result_html(details, status, error) == expected


def test_file_derived_text_is_escaped():
    html = result_html({"warnings": ["<img src=x onerror=alert(1)>"]}, "failed", "bad <script>")
    assert "<img" not in html and "<script>" not in html and "&lt;img" in html and "&lt;script&gt;" in html

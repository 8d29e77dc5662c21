"""The ``README.md`` and runnable ``usage.py`` shipped in an export's zip, one pair per format.

Kept apart from :mod:`studio.services.deploy.model_export` because they are text: templates of small
stand-alone programs (onnxruntime / LiteRT / the RF-DETR packages), filled with the model's input size,
normalisation and post-processing so that a user can run the file without this studio.
"""

from __future__ import annotations

from string import Template
from typing import Any

_USAGE = '''\
"""Detect objects in one image with the exported RF-DETR model ($runtime).

    pip install $pip numpy pillow
    python usage.py IMAGE [THRESHOLD]
"""
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
HEIGHT, WIDTH = $height, $width  # the input size the model was exported at
MEANS = np.array($means, dtype=np.float32)  # pixels scaled to [0, 1], then (x - MEANS) / STDS
STDS = np.array($stds, dtype=np.float32)
CLASS_NAMES = (HERE / "class_names.txt").read_text(encoding="utf-8").splitlines()  # logit column i = name i
TOP_K = $top_k  # best (query, class) pairs kept, like the PyTorch model's post-processing


def preprocess(image):
    """RGB, resized to the export size, normalised; float32 $layout."""
    rgb = image.convert("RGB").resize((WIDTH, HEIGHT), Image.BILINEAR)
    x = (np.asarray(rgb, dtype=np.float32) / 255.0 - MEANS) / STDS
    return $to_layout


def postprocess(boxes, logits, width, height, threshold):
    """boxes [Q, 4] cx, cy, w, h in [0, 1]; logits [Q, C] -> xyxy pixels, scores, class ids."""
    scores = (1.0 / (1.0 + np.exp(-logits))).reshape(-1)  # sigmoid per (query, class)
    order = np.argsort(-scores, kind="stable")[:TOP_K]
    order = order[scores[order] >= threshold]
    query, class_id = np.divmod(order, logits.shape[1])
    cx, cy, w, h = boxes[query].T
    w, h = np.maximum(w, 0), np.maximum(h, 0)  # a negative size is an empty box, as in the model's own code
    xyxy = np.stack([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height], 1)
    return np.clip(xyxy, 0, [width, height, width, height]), scores[order], class_id
$runner

def main():
    image = Image.open(sys.argv[1])
    threshold = float(sys.argv[2]) if len(sys.argv) > 2 else 0.5
    boxes, logits = run(preprocess(image))
    xyxy, scores, class_ids = postprocess(boxes[0], logits[0], image.width, image.height, threshold)
    print(f"{len(scores)} detections")
    for (x0, y0, x1, y1), score, c in zip(xyxy, scores, class_ids):
        name = CLASS_NAMES[c] if c < len(CLASS_NAMES) else f"class_{c}"
        print(f"{name} {score:.4f} {x0:.1f} {y0:.1f} {x1:.1f} {y1:.1f}")


if __name__ == "__main__":
    main()
'''
_ONNX_RUNNER = '''

def run(x):
    """onnxruntime: input 'input', outputs 'dets' (boxes) and 'labels' (class logits)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(HERE / "$model"), providers=["CPUExecutionProvider"])
    return session.run(["dets", "labels"], {"input": x})
'''
_TFLITE_RUNNER = '''

def run(x):
    """LiteRT interpreter; input NHWC; outputs (boxes, logits) in the ONNX order (names end ':0', ':1')."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(HERE / "$model"), num_threads=2)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    if inp["dtype"] != np.float32:  # fully integer models take quantised input
        scale, zero = inp["quantization"]
        x = np.round(x / scale + zero).astype(inp["dtype"])
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    outs = []
    for d in sorted(interpreter.get_output_details(), key=lambda d: d["name"].rsplit(":", 1)[-1]):
        y = interpreter.get_tensor(d["index"])
        if d["dtype"] != np.float32 and d["quantization"][0]:
            y = (y.astype(np.float32) - d["quantization"][1]) * d["quantization"][0]
        outs.append(y)
    return outs[0], outs[1]
'''
_BUNDLE_USAGE = '''\
"""Load the Roboflow bundle (weights.pt + class_names.txt) and detect objects in one image.

    python usage.py IMAGE [THRESHOLD]
"""
import importlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main():
    threshold = float(sys.argv[2]) if len(sys.argv) > 2 else 0.5
    try:  # RF-DETR Studio's own core (this repository on PYTHONPATH)
        import rfdetr_core

        model = getattr(rfdetr_core, "$variant_class").from_checkpoint(HERE / "weights.pt")
    except ImportError:  # the official package: pip install rfdetr
        official = importlib.import_module("rfdetr")
        model = official.$variant_class(pretrain_weights=str(HERE / "weights.pt"))
    detections = model.predict(sys.argv[1], threshold=threshold)
    print(f"{len(detections)} detections")
    for box, score, name in zip(detections.xyxy, detections.confidence, detections.data["class_name"]):
        print(name, f"{score:.4f}", *(f"{v:.1f}" for v in box))


if __name__ == "__main__":
    main()
'''


def _variant_class(variant: str | None) -> str:
    """``rfdetr-nano`` → ``RFDETRNano`` (the official package's class names)."""
    parts = (variant or "rfdetr-base").split("-")[1:]
    return "RFDETR" + "".join(p.capitalize() for p in parts)


def _bundle_texts(src: Any) -> tuple[str, str]:
    """``(usage.py, how to load it)`` of the Roboflow bundle."""
    variant_class = _variant_class(src.variant)
    usage = Template(_BUNDLE_USAGE).substitute(variant_class=variant_class)
    how = (
        "`weights.pt` is `{'model': state_dict, 'args': Namespace(class_names=...)}`, what Roboflow's "
        f"uploader reads. Load it with `rfdetr_core.{variant_class}.from_checkpoint('weights.pt')` "
        "or, with the "
        f"official package, `rfdetr.{variant_class}(pretrain_weights='weights.pt')` "
        "(standard architectures)."
    )
    return usage, how


def _model_file_texts(
    fmt: str, rf: Any, src: Any, model_name: str, height: int, width: int
) -> tuple[str, str]:
    """``(usage.py, input/output description)`` of an ONNX or TFLite file."""
    nhwc = fmt.startswith("tflite")
    runner = Template(_TFLITE_RUNNER if nhwc else _ONNX_RUNNER).substitute(model=model_name)
    usage = Template(_USAGE).substitute(
        runtime="LiteRT" if nhwc else "onnxruntime",
        pip="ai-edge-litert" if nhwc else "onnxruntime",
        height=height,
        width=width,
        means=[round(m, 6) for m in src.means],
        stds=[round(s, 6) for s in src.stds],
        top_k=_top_k(rf),
        runner=runner,
        layout="[1, H, W, 3] (NHWC for LiteRT)" if nhwc else "[1, 3, H, W] (NCHW, input 'input')",
        to_layout="x[None].astype(np.float32)" if nhwc else "x.transpose(2, 0, 1)[None].astype(np.float32)",
    )
    how = (
        f"Input: RGB resized to {width}×{height}, scaled to [0, 1], normalised with means "
        f"{list(src.means)} and stds {list(src.stds)}, "
        + (
            "NHWC `[1, H, W, 3]`, run with the LiteRT interpreter (`pip install ai-edge-litert`). "
            if nhwc
            else "NCHW `[1, 3, H, W]` named `input`, run with onnxruntime. "
        )
        + "Outputs: `dets` `[1, Q, 4]` boxes (cx, cy, w, h in [0, 1]) and `labels` `[1, Q, C]` class "
        "logits (sigmoid gives the score; column *i* is line *i* of `class_names.txt`)."
    )
    return usage, how


def snippets(
    fmt: str, title: str, rf: Any, model_name: str, report: Any, status: str, summary: str
) -> tuple[str, str]:
    """``(README.md, usage.py)`` for the zip of a *fmt* export (``title``: the format's name, ``report``:
    its verification report, ``summary``: the verification in words)."""
    from rfdetr_core.export import source_from_rfdetr

    src = source_from_rfdetr(rf)
    if fmt == "roboflow":
        usage, how = _bundle_texts(src)
    else:
        height, width = getattr(report, "input_shape", None) or (src.resolution, src.resolution)
        usage, how = _model_file_texts(fmt, rf, src, model_name, height, width)
    warning = (
        "> **Warning: verification FAILED** (see `verification.json`): " + "; ".join(report.failures) + "\n\n"
        if status != "done"
        else ""
    )
    readme = (
        f"# {title} export\n\n{warning}Files: `{model_name}`, `class_names.txt` (one class per "
        f"line, model order), `verification.json` (PyTorch vs this export), `usage.py`.\n\n{how}\n\n"
        "```\npython usage.py image.jpg 0.5\n```\n\nVerification:\n\n```\n" + summary + "\n```\n"
    )
    return readme, usage


def _top_k(rf: Any) -> int:
    """How many (query, class) pairs the model's own post-processing keeps."""
    return int(getattr(getattr(rf, "model", None), "num_select", None) or 300)

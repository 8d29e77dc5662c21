"""ONNX graph rewrites that make RF-DETR's graph convert to TFLite built-in ops only.

Two patterns need help before onnx2tf sees the graph:

* ``Slice`` on tensors of rank > 5 (the deformable attention slices 6-D reference boxes into centre
  and size). TFLite's ``STRIDED_SLICE`` stops at 5-D, so onnx2tf emits a Flex op that the LiteRT
  interpreter refuses. :func:`lower_high_rank_slices` folds the leading axes into one, slices, and
  reshapes back — same values, rank 2.
* ``GridSample`` (optional, :func:`rewrite_gridsample`).

The deformable attention samples its value maps with ``grid_sample`` (bilinear, zero padding,
``align_corners=False``). onnx2tf maps ``GridSample`` to a batched ``gather_nd`` that TFLite's kernel
does not implement faithfully, so scores come out wrong without any error. Before conversion each
``GridSample`` is replaced by the same arithmetic spelled with ops every runtime supports: pad the
image by one zero pixel, flatten it to ``[N*(H+2)*(W+2), C]``, compute the four neighbour indices and
bilinear weights, ``Gather`` along axis 0 and blend. Indices are clamped into the zero border, which is
exactly what zero padding means for samples outside the image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _static_shapes(model: onnx.ModelProto, names: set[str]) -> dict[str, list[int]]:
    """Concrete shapes of *names*: from shape inference, else by running the graph once."""
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    shapes: dict[str, list[int]] = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in vi.type.tensor_type.shape.dim]
        if vi.name in names and dims and min(dims) > 0:
            shapes[vi.name] = dims
    missing = names - shapes.keys()
    if missing:
        import onnxruntime as ort

        probe = onnx.ModelProto()
        probe.CopyFrom(model)
        del probe.graph.output[:]
        probe.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in sorted(missing))
        session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
        feeds = {}
        for inp in session.get_inputs():
            shape = [d if isinstance(d, int) else 1 for d in inp.shape]
            feeds[inp.name] = np.zeros(shape, dtype=np.float32)
        for name, value in zip(sorted(missing), session.run(sorted(missing), feeds), strict=True):
            shapes[name] = list(value.shape)
    return shapes


class _Builder:
    """Collects the nodes and constants of one replacement subgraph under a unique prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def const(self, value, dtype=np.float32) -> str:
        name = f"{self.prefix}/c{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, kind: str, *inputs: str, out: str | None = None, **attrs) -> str:
        self.count += 1
        name = out or f"{self.prefix}/{kind}_{self.count}"
        self.nodes.append(
            helper.make_node(kind, list(inputs), [name], name=f"{self.prefix}/n{self.count}", **attrs)
        )
        return name


def _replace(node: onnx.NodeProto, shapes: dict[str, list[int]], index: int) -> _Builder:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    mode = attrs.get("mode", b"bilinear")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    padding = attrs.get("padding_mode", b"zeros")
    padding = padding.decode() if isinstance(padding, bytes) else padding
    if mode not in ("bilinear", "linear") or padding != "zeros" or attrs.get("align_corners", 0):
        raise NotImplementedError(f"GridSample rewrite supports bilinear/zeros/align_corners=0, got {attrs}")
    image, grid = node.input[0], node.input[1]
    n, c, h, w = shapes[image]
    b = _Builder(f"gs_rewrite_{index}")
    pads = b.const([0, 0, 1, 1, 0, 0, 1, 1], np.int64)
    padded = b.op("Pad", image, pads, mode="constant")
    flat = b.op(
        "Reshape", b.op("Transpose", padded, perm=[0, 2, 3, 1]), b.const([n * (h + 2) * (w + 2), c], np.int64)
    )
    gx = b.op("Gather", grid, b.const(0, np.int64), axis=3)  # [N, Ho, Wo]
    gy = b.op("Gather", grid, b.const(1, np.int64), axis=3)
    # Unnormalise (align_corners=False) and shift by the one-pixel border: ((g+1)*size-1)/2 + 1.
    ix = b.op("Add", b.op("Mul", gx, b.const(w / 2.0)), b.const((w - 1) / 2.0 + 1.0))
    iy = b.op("Add", b.op("Mul", gy, b.const(h / 2.0)), b.const((h - 1) / 2.0 + 1.0))
    x0, y0 = b.op("Floor", ix), b.op("Floor", iy)
    wx1, wy1 = b.op("Sub", ix, x0), b.op("Sub", iy, y0)
    one = b.const(1.0)
    wx0, wy0 = b.op("Sub", one, wx1), b.op("Sub", one, wy1)
    zero = b.const(0.0)
    xs = [b.op("Clip", x, zero, b.const(w + 1.0)) for x in (x0, b.op("Add", x0, one))]
    ys = [b.op("Clip", y, zero, b.const(h + 1.0)) for y in (y0, b.op("Add", y0, one))]
    base = b.const((np.arange(n) * (h + 2) * (w + 2)).reshape(n, 1, 1))
    row = b.const(w + 2.0)
    axis = b.const([-1], np.int64)
    terms = []
    for y, wy in zip(ys, (wy0, wy1), strict=True):
        for x, wx in zip(xs, (wx0, wx1), strict=True):
            flat_index = b.op("Add", b.op("Add", base, b.op("Mul", y, row)), x)
            gathered = b.op("Gather", flat, b.op("Cast", flat_index, to=TensorProto.INT64), axis=0)
            weight = b.op("Unsqueeze", b.op("Mul", wx, wy), axis)
            terms.append(b.op("Mul", gathered, weight))
    total = b.op("Add", b.op("Add", terms[0], terms[1]), b.op("Add", terms[2], terms[3]))
    b.op("Transpose", total, perm=[0, 3, 1, 2], out=node.output[0])
    return b


def _const_value(model: onnx.ModelProto, name: str) -> np.ndarray | None:
    for init in model.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return numpy_helper.to_array(node.attribute[0].t)
    return None


def lower_high_rank_slices(model: onnx.ModelProto, max_rank: int = 5) -> int:
    """Rewrite last-axis ``Slice`` nodes on tensors of rank > *max_rank* as rank-2 slices, in place."""
    candidates = [n for n in model.graph.node if n.op_type == "Slice" and len(n.input) >= 4]
    shapes = _static_shapes(model, {n.input[0] for n in candidates} | {n.output[0] for n in candidates})
    new_nodes: list[onnx.NodeProto] = []
    count = 0
    for node in model.graph.node:
        in_shape, out_shape = shapes.get(node.input[0]) if node in candidates else None, None
        axes = _const_value(model, node.input[3]) if in_shape and len(in_shape) > max_rank else None
        if axes is None or any(int(a) % len(in_shape) != len(in_shape) - 1 for a in axes.reshape(-1)):
            new_nodes.append(node)
            continue
        out_shape = shapes[node.output[0]]
        b = _Builder(f"slice_rewrite_{count}")
        lead = int(np.prod(in_shape[:-1]))
        flat = b.op("Reshape", node.input[0], b.const([lead, in_shape[-1]], np.int64))
        extra = list(node.input[4:5])  # steps, if given
        sliced = b.op("Slice", flat, node.input[1], node.input[2], b.const([1], np.int64), *extra)
        b.op("Reshape", sliced, b.const(out_shape, np.int64), out=node.output[0])
        new_nodes.extend(b.nodes)
        model.graph.initializer.extend(b.inits)
        count += 1
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    return count


def prepare_for_tflite(onnx_path: str | Path, output_path: str | Path, *, gridsample: bool = False) -> dict:
    """Apply the TFLite rewrites to a copy of the graph; returns how many nodes each one changed."""
    model = onnx.load(str(onnx_path))
    counts = {"high_rank_slices": lower_high_rank_slices(model)}
    onnx.save(model, str(output_path))
    counts["gridsample"] = rewrite_gridsample(output_path, output_path) if gridsample else 0
    onnx.checker.check_model(str(output_path))
    return counts


def rewrite_gridsample(onnx_path: str | Path, output_path: str | Path) -> int:
    """Write a copy of *onnx_path* without ``GridSample``; return how many nodes were replaced."""
    model = onnx.load(str(onnx_path))
    targets = [n for n in model.graph.node if n.op_type == "GridSample"]
    if not targets:
        onnx.save(model, str(output_path))
        return 0
    shapes = _static_shapes(model, {n.input[0] for n in targets})
    new_nodes: list[onnx.NodeProto] = []
    for node in model.graph.node:
        if node.op_type != "GridSample":
            new_nodes.append(node)
            continue
        builder = _replace(node, shapes, len(new_nodes))
        new_nodes.extend(builder.nodes)
        model.graph.initializer.extend(builder.inits)
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(output_path))
    return len(targets)

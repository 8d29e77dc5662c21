"""The verification report of an export, as typed data with a stable JSON form.

Why dataclasses and not a dict: the report is written by the verifier, extended by the exporter
(export time, where it was saved), summarised for the CLI and turned into the Export page's figures by
the studio. With a dict each of those read it through string keys, and a renamed key failed silently
as ``None``. The JSON written to ``<artefact>.verification.json`` (and into the studio's zip) keeps the
layout it always had: the same keys in the same order, and optional sections left out when absent.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class OutputDiff:
    """Max absolute difference of the raw outputs (artefact vs PyTorch)."""

    boxes: float
    logits: float
    scores: float


@dataclass
class DetectionAgreement:
    """How many of PyTorch's top-k detections the artefact reproduces (see ``metrics.match_detections``)."""

    top_k: int
    compared: int
    matched: int
    match_rate: float
    max_box_error_px: float | None = None
    max_score_error: float | None = None


@dataclass
class Latency:
    """Median single-image latency in milliseconds of both models, on the same thread count."""

    threads: int
    pytorch: float | None = None
    artefact: float | None = None
    ratio: float | None = None


@dataclass
class MapScores:
    """COCO mAP of one model on the labelled images."""

    map50_95: float
    map50: float


@dataclass
class MapComparison:
    """mAP of PyTorch and of the artefact on the same labelled images."""

    pytorch: MapScores
    artefact: MapScores
    images: int

    @property
    def drop(self) -> float:
        """How much mAP@50:95 the artefact loses (negative: it gained)."""
        return self.pytorch.map50_95 - self.artefact.map50_95

    def to_dict(self, *, images_first: bool = False) -> dict[str, Any]:
        body = {"pytorch": asdict(self.pytorch), "artefact": asdict(self.artefact)}
        return {"images": self.images, **body} if images_first else {**body, "images": self.images}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MapComparison:
        return cls(MapScores(**data["pytorch"]), MapScores(**data["artefact"]), data["images"])


@dataclass
class TfliteInfo:
    """What the TFLite runner reported: which interpreter ran it and whether it needs Flex ops."""

    runtime: str | None = None
    litert_error: str | None = None
    flex_ops: list[str] | None = None
    input_shape: list[int] | None = None


def _without_none(data: dict[str, Any], optional: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if not (k in optional and v is None)}


@dataclass(kw_only=True)
class VerificationReport:
    """An ONNX / TFLite artefact compared with the PyTorch model it came from."""

    artefact: str
    kind: str
    images: str
    input_shape: list[int]
    runtime: str | None
    max_abs_diff: OutputDiff
    detections: DetectionAgreement
    latency_ms: Latency
    tolerance: dict[str, float | None]
    tflite: TfliteInfo | None = None
    map: MapComparison | None = None
    status: str = "passed"
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    report_path: str | None = None
    export_seconds: float | None = None

    _OPTIONAL = ("tflite", "map", "report_path", "export_seconds")

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["map"] = self.map.to_dict() if self.map is not None else None
        return _without_none(data, self._OPTIONAL)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VerificationReport:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        tflite, mp = known.get("tflite"), known.get("map")
        return cls(
            **{
                **known,
                "max_abs_diff": OutputDiff(**data["max_abs_diff"]),
                "detections": DetectionAgreement(**data["detections"]),
                "latency_ms": Latency(**data["latency_ms"]),
                "tflite": TfliteInfo(**tflite) if tflite is not None else None,
                "map": MapComparison.from_dict(mp) if mp is not None else None,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> VerificationReport:
        return cls.from_dict(json.loads(text))


@dataclass(kw_only=True)
class BundleReport:
    """A Roboflow bundle reloaded and compared with the model it was written from (``verify_bundle``),
    plus, when the studio had labelled images, mAP and latency of both."""

    artefact: str
    kind: str
    status: str
    images: int
    files: list[str]
    payload_keys: list[str]
    class_names_txt_match: bool
    args_class_names_match: bool
    reloaded_class_names_match: bool
    max_abs_diff: float
    failures: list[str] = field(default_factory=list)
    map: MapComparison | None = None
    latency_ms: Latency | None = None
    export_seconds: float | None = None
    report_path: str | None = None

    _OPTIONAL = ("map", "latency_ms", "export_seconds", "report_path")

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["map"] = self.map.to_dict(images_first=True) if self.map is not None else None
        return _without_none(data, self._OPTIONAL)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BundleReport:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        mp, lat = known.get("map"), known.get("latency_ms")
        return cls(
            **{
                **known,
                "map": MapComparison.from_dict(mp) if mp is not None else None,
                "latency_ms": Latency(**lat) if lat is not None else None,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> BundleReport:
        return cls.from_dict(json.loads(text))


__all__ = [
    "BundleReport",
    "DetectionAgreement",
    "Latency",
    "MapComparison",
    "MapScores",
    "OutputDiff",
    "TfliteInfo",
    "VerificationReport",
]

"""The Export tab: a run's model exported (ONNX / TFLite / Roboflow bundle) and verified, and deployed.

``model_export`` (export + verification + zip), ``export_images`` (validation and calibration images),
``verification`` (what the page shows of a report), ``history`` (the Export rows and table),
``snippets`` (the zip's README and usage.py), ``roboflow`` (upload with the key) and ``redact``
(keeping the key out of output and logs)."""

"""The Export tab: exporting a run's model (ONNX / TFLite / Roboflow bundle), verifying it, bundle snippets, Roboflow deploy."""

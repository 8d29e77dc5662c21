"""The Review tab: a run's stored predictions, TP/FP/FN matching, metrics, pictures, plots and the FiftyOne hand-off."""

"""rfdetr_core: an independent implementation of RF-DETR."""

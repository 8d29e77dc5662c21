"""RF-DETR Studio: a local-first labeling and training studio."""

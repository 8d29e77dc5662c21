"""rfdetr_core: an independent implementation of RF-DETR."""

from rfdetr_core.detr import RFDETR
from rfdetr_core.variants import RFDETRBase, RFDETRLarge, RFDETRMedium, RFDETRNano, RFDETRSmall

__all__ = ["RFDETR", "RFDETRNano", "RFDETRSmall", "RFDETRMedium", "RFDETRBase", "RFDETRLarge"]

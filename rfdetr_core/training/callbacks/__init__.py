"""Lightning callbacks of RF-DETR training: EMA, best model, early stopping, drop path, COCO metrics, progress."""

from rfdetr_core.training.callbacks.best_model import BestModelCallback
from rfdetr_core.training.callbacks.coco_eval import COCOEvalCallback
from rfdetr_core.training.callbacks.drop_path import DropPathCallback
from rfdetr_core.training.callbacks.early_stopping import RFDETREarlyStopping
from rfdetr_core.training.callbacks.ema import EMACallback
from rfdetr_core.training.callbacks.progress import ProgressEvent, StopRequested, TrainingProgress

RFDETREMACallback = EMACallback  # the reference's name

__all__ = [
    "BestModelCallback",
    "COCOEvalCallback",
    "DropPathCallback",
    "EMACallback",
    "ProgressEvent",
    "RFDETREMACallback",
    "RFDETREarlyStopping",
    "StopRequested",
    "TrainingProgress",
]

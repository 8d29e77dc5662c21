"""Training hyper-parameters (the knobs ``RFDETR.train(**kwargs)`` accepts).

Field names and defaults follow the RF-DETR API so code written for it runs unchanged; unknown
names are rejected with the list of valid ones, because a typo such as ``epoch=5`` must not
silently train for the default 100 epochs.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class TrainConfig(BaseModel):
    """Optimisation, schedule, data, EMA, evaluation and logging settings for one training run."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # optimisation
    lr: float = 1e-4
    lr_encoder: float = 1.5e-4
    batch_size: int | Literal["auto"] = 4
    grad_accum_steps: int = 1
    eval_batch_size: int | None = None
    epochs: int = 100
    weight_decay: float = 1e-4
    lr_vit_layer_decay: float = 0.8
    lr_component_decay: float = 0.7
    warmup_epochs: float = 0.0
    drop_path: float = 0.0
    clip_max_norm: float = Field(default=0.1, ge=0.0)
    cls_loss_coef: float = 1.0
    lr_scheduler: str = "step"
    optimizer: str = "adamw"
    amp_dtype: Literal["auto", "bf16", "fp16"] | None = "auto"
    seed: int | None = None
    # EMA
    use_ema: bool = True
    ema_decay: float = 0.993
    ema_tau: int = 100
    ema_update_interval: int = 1
    # data and augmentation
    dataset_file: Literal["roboflow", "coco", "yolo"] = "roboflow"
    dataset_dir: str | None
    output_dir: str = "output"
    class_names: list[str] | None = None
    square_resize_div_64: bool = True
    multi_scale: bool | Literal["per-batch", "per-sample", "off"] = "per-batch"
    expanded_scales: bool = True
    scale_jitter: bool = True
    aug_config: dict[str, Any] | None = None
    num_workers: int = 2
    pin_memory: bool | None = None
    persistent_workers: bool | None = None
    save_dataset_grids: bool = False
    # checkpoints, resume, early stopping
    resume: str | None = None
    checkpoint_interval: int = Field(default=10, ge=1)
    skip_best_epochs: int = Field(default=0, ge=0)
    dont_save_weights: bool = False
    best_model_metric: Literal["map", "mar"] = "map"
    early_stopping: bool = False
    early_stopping_patience: int = 10
    early_stopping_min_delta: float = 0.001
    early_stopping_use_ema: bool = False
    # evaluation
    run_test: bool = False
    eval_interval: int = 1
    eval_max_dets: int = 500
    log_per_class_metrics: bool = False
    num_sanity_val_steps: int = 0
    # hardware and logging
    accelerator: str = "auto"
    devices: int | str = 1
    progress_bar: Literal["tqdm", "rich"] | None = None
    tensorboard: bool = True
    wandb: bool = False
    mlflow: bool = False
    project: str | None = None
    run: str | None = None
    notes: Any | None = None

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown(cls, values: Any) -> Any:
        """Name the unknown keys and list the valid ones (pydantic alone says only 'extra')."""
        if isinstance(values, dict):
            unknown = sorted(set(values) - set(cls.model_fields))
            if unknown:
                raise ValueError(
                    f"Unknown training parameter(s): {', '.join(unknown)}. "
                    f"Valid parameters: {', '.join(sorted(cls.model_fields))}."
                )
        return values

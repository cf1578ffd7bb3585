"""The 3D bundles' configs as functions of a :class:`volseg.bundles.generate.Bundle3D` row (the
template :mod:`volseg.bundles.generate` writes from), and the files every bundle shares.

Each function returns the JSON document of one file; key order is the file's. What a CT and an MR
bundle do differently is here and nowhere else: the intensity step (``ct_transforms`` with
``hu_window`` or ``mri_transforms``, z-score) and the metadata's input description.
"""
from __future__ import annotations

from typing import Any, Dict

ROI = (96, 96, 96)
HU_WINDOW = (-1000.0, 400.0)


def _drop(doc: Any, key: str) -> Any:
    """``doc`` without ``key`` at any depth (an MR bundle has no ``hu_window`` anywhere)."""
    if isinstance(doc, dict):
        return {k: _drop(v, key) for k, v in doc.items() if k != key}
    if isinstance(doc, list):
        return [_drop(v, key) for v in doc]
    return doc


def _for_modality(doc: Dict[str, Any], b: Any) -> Dict[str, Any]:
    return doc if b.modality == "CT" else _drop(doc, "hu_window")


def _network_def(b: Any) -> Dict[str, Any]:
    """``network_def``, the same in ``train.json`` and ``inference.json``."""
    return {
        "_target_": "volseg.training.build_network",
        "name": b.network,
        "spatial_dims": 3,
        "in_channels": "@in_channels",
        "out_channels": "@num_classes",
        "channels": "@channels",
        "options": "@network_options",
    }


def train_config(b: Any) -> Dict[str, Any]:
    """``configs/train.json``: SupervisedTrainer with volseg's handlers, validation every ``val_interval``."""
    transforms = "volseg.transforms.ct_transforms" if b.modality == "CT" else "volseg.transforms.mri_transforms"
    return _for_modality({
        "imports": [
            "$import torch",
            "$import monai",
            "$import volseg",
            "$import volseg.training",
            "$import volseg.inference.backends",
        ],
        "bundle_root": f"bundles/{b.name}",
        "dataset_dir": b.dataset_dir,
        "output_dir": "@bundle_root",
        "device": "auto",
        "max_epochs": 100,
        "val_interval": 2,
        "roi_size": list(ROI),
        "batch_size": 2,
        "num_workers": 0,
        "cache_rate": 1.0,
        "learning_rate": 0.001,
        "seed": 0,
        "amp": True,
        "cpu_amp": False,
        "deterministic": True,
        "val_fraction": 0.2,
        "num_samples": 4,
        "pixdim": list(b.pixdim),
        "hu_window": list(HU_WINDOW),
        "intensity": None,
        "in_channels": 1,
        "num_classes": len(b.labels) + 1,
        "labels": dict(b.labels),
        "channels": None,
        "network_options": {},
        "patience": 0,
        "min_delta": 0.0,
        "resume": False,
        "init_from": None,
        "freeze_encoder": 0,
        "distributed": False,
        "overlap": 0.25,
        "sw_batch_size": 4,
        "torch_device": {"_target_": "volseg.training.resolve_device", "device": "@device"},
        "network_def": _network_def(b),
        "network": {
            "_target_": "volseg.training.prepare_network",
            "network": "@network_def",
            "device": "@torch_device",
            "distributed": "@distributed",
            "roi_size": "@roi_size",
            "in_channels": "@in_channels",
        },
        "loss": {"_target_": "DiceCELoss", "to_onehot_y": True, "softmax": True, "squared_pred": True},
        "optimizer": {
            "_target_": "torch.optim.AdamW",
            "params": "$@network.parameters()",
            "lr": "@learning_rate",
            "weight_decay": 1e-05,
        },
        "lr_scheduler": {
            "_target_": "torch.optim.lr_scheduler.CosineAnnealingLR",
            "optimizer": "@optimizer",
            "T_max": "@max_epochs",
            "eta_min": 1e-05,
        },
        "split": {
            "_target_": "volseg.training.load_split",
            "dataset_dir": "@dataset_dir",
            "val_fraction": "@val_fraction",
            "seed": "@seed",
        },
        "train": {
            "preprocessing": {
                "_target_": transforms,
                "stage": "train",
                "keys": ["image", "label"],
                "pixdim": "@pixdim",
                "roi_size": "@roi_size",
                "num_samples": "@num_samples",
                "hu_window": "@hu_window",
                "intensity": "@intensity",
            },
            "dataset": {
                "_target_": "volseg.training.make_dataset",
                "data": "$@split['train']",
                "transform": "@train#preprocessing",
                "cache_rate": "@cache_rate",
                "num_workers": "@num_workers",
            },
            "dataloader": {
                "_target_": "volseg.training.make_loader",
                "dataset": "@train#dataset",
                "batch_size": "@batch_size",
                "shuffle": True,
                "num_workers": "@num_workers",
                "distributed": "@distributed",
                "seed": "@seed",
            },
            "inferer": {"_target_": "SimpleInferer"},
            "handlers": [
                {
                    "_target_": "volseg.training.InitFrom",
                    "network": "@network",
                    "path": "@init_from",
                    "freeze_encoder": "@freeze_encoder",
                },
                {
                    "_target_": "ValidationHandler",
                    "validator": "@validate#evaluator",
                    "epoch_level": True,
                    "interval": "@val_interval",
                },
                {"_target_": "LrScheduleHandler", "lr_scheduler": "@lr_scheduler", "print_lr": False},
                {
                    "_target_": "volseg.training.TrainingRecorder",
                    "output_dir": "@output_dir",
                    "network": "@network",
                    "optimizer": "@optimizer",
                    "evaluator": "@validate#evaluator",
                    "lr_scheduler": "@lr_scheduler",
                    "key_metric": "val_mean_dice",
                    "patience": "@patience",
                    "min_delta": "@min_delta",
                    "resume": "@resume",
                    "val_interval": "@val_interval",
                },
                {
                    "_target_": "volseg.training.BundleExport",
                    "bundle_root": "@bundle_root",
                    "output_dir": "@output_dir",
                    "settings": {
                        "roi_size": "@roi_size",
                        "pixdim": "@pixdim",
                        "intensity": "@intensity",
                        "hu_window": "@hu_window",
                        "in_channels": "@in_channels",
                        "num_classes": "@num_classes",
                        "labels": "@labels",
                        "channels": "@channels",
                        "network_options": "@network_options",
                        "overlap": "@overlap",
                        "sw_batch_size": "@sw_batch_size",
                    },
                },
            ],
            "trainer": {
                "_target_": "SupervisedTrainer",
                "max_epochs": "@max_epochs",
                "device": "@torch_device",
                "train_data_loader": "@train#dataloader",
                "network": "@network",
                "loss_function": "@loss",
                "optimizer": "@optimizer",
                "inferer": "$volseg.inference.backends.AutocastInferer(@train#inferer, @torch_device, @cpu_amp)",
                "train_handlers": "@train#handlers",
                "amp": "$@amp and @torch_device.type == 'cuda'",
            },
        },
        "validate": {
            "preprocessing": {
                "_target_": transforms,
                "stage": "val",
                "keys": ["image", "label"],
                "pixdim": "@pixdim",
                "roi_size": "@roi_size",
                "num_samples": "@num_samples",
                "hu_window": "@hu_window",
                "augment": False,
                "intensity": "@intensity",
            },
            "data": "$@split['val']",
            "dataset": {
                "_target_": "volseg.training.make_dataset",
                "data": "@validate#data",
                "transform": "@validate#preprocessing",
                "cache_rate": "@cache_rate",
                "num_workers": "@num_workers",
            },
            "dataloader": {
                "_target_": "volseg.training.make_loader",
                "dataset": "@validate#dataset",
                "batch_size": 1,
                "shuffle": False,
                "num_workers": "@num_workers",
            },
            "inferer": {
                "_target_": "SlidingWindowInferer",
                "roi_size": "@roi_size",
                "sw_batch_size": "@sw_batch_size",
                "overlap": "@overlap",
                "mode": "gaussian",
            },
            "postprocessing": {
                "_target_": "Compose",
                "transforms": [
                    {"_target_": "Activationsd", "keys": "pred", "softmax": True},
                    {
                        "_target_": "AsDiscreted",
                        "keys": ["pred", "label"],
                        "argmax": [True, False],
                        "to_onehot": "@num_classes",
                    },
                ],
            },
            "handlers": [{"_target_": "volseg.training.PerLabelDice", "labels": "@labels"}],
            "key_metric": {
                "val_mean_dice": {
                    "_target_": "MeanDice",
                    "include_background": False,
                    "output_transform": "$monai.handlers.from_engine(['pred', 'label'])",
                },
            },
            "evaluator": {
                "_target_": "SupervisedEvaluator",
                "device": "@torch_device",
                "val_data_loader": "@validate#dataloader",
                "network": "@network",
                "inferer": "$volseg.inference.backends.AutocastInferer(@validate#inferer, @torch_device, @cpu_amp)",
                "postprocessing": "@validate#postprocessing",
                "key_val_metric": "@validate#key_metric",
                "val_handlers": "@validate#handlers",
                "amp": "$@amp and @torch_device.type == 'cuda'",
            },
        },
        "initialize": ["$volseg.training.seed_everything(@seed, @deterministic)"],
        "run": ["$@train#trainer.run()"],
        "training": ["$@train#trainer.run()"],
        "finalize": [],
    }, b)


def inference_config(b: Any) -> Dict[str, Any]:
    """``configs/inference.json``: the streamed sliding window, softmax, ``Invertd``, argmax, ``SaveMaskd``."""
    transforms = "volseg.transforms.ct_transforms" if b.modality == "CT" else "volseg.transforms.mri_transforms"
    return _for_modality({
        "imports": ["$import os", "$import torch", "$import volseg"],
        "bundle_root": f"bundles/{b.name}",
        "output_dir": "@bundle_root",
        "dataset_dir": "@bundle_root",
        "model_path": "$os.path.join(@output_dir, 'models', 'model.pt')",
        "pred_dir": "$os.path.join(@output_dir, 'predictions')",
        "device": "$torch.device('cuda' if torch.cuda.is_available() else 'cpu')",
        "num_classes": len(b.labels) + 1,
        "labels": dict(b.labels),
        "roi_size": list(ROI),
        "pixdim": list(b.pixdim),
        "hu_window": list(HU_WINDOW),
        "intensity": None,
        "overlap": 0.25,
        "sw_batch_size": 4,
        "num_workers": 0,
        "in_channels": 1,
        "channels": None,
        "network_options": {},
        "network_def": _network_def(b),
        "network": {
            "_target_": "volseg.inference.bundle.load_model",
            "network": "@network_def",
            "path": "@model_path",
            "device": "@device",
        },
        "preprocessing": {
            "_target_": transforms,
            "stage": "infer",
            "keys": ["image"],
            "pixdim": "@pixdim",
            "hu_window": "@hu_window",
            "roi_size": "@roi_size",
            "intensity": "@intensity",
        },
        "datalist": {"_target_": "volseg.inference.bundle.list_inputs", "path": "@dataset_dir"},
        "dataset": {"_target_": "Dataset", "data": "@datalist", "transform": "@preprocessing"},
        "dataloader": {
            "_target_": "DataLoader",
            "dataset": "@dataset",
            "batch_size": 1,
            "shuffle": False,
            "num_workers": "@num_workers",
        },
        "inferer": {
            "_target_": "volseg.inference.StreamingInferer",
            "roi_size": "@roi_size",
            "overlap": "@overlap",
            "sw_batch_size": "@sw_batch_size",
            "mode": "gaussian",
        },
        "postprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "Activationsd", "keys": "pred", "softmax": True},
                {
                    "_target_": "Invertd",
                    "keys": "pred",
                    "transform": "@preprocessing",
                    "orig_keys": "image",
                    "nearest_interp": False,
                    "to_tensor": True,
                },
                {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
                {"_target_": "volseg.inference.bundle.SaveMaskd", "keys": "pred", "output_dir": "@pred_dir"},
            ],
        },
        "evaluator": {
            "_target_": "SupervisedEvaluator",
            "device": "@device",
            "val_data_loader": "@dataloader",
            "network": "@network",
            "inferer": "@inferer",
            "postprocessing": "@postprocessing",
            "amp": False,
        },
        "initialize": ["$monai.utils.set_determinism(seed=0)"],
        "run": ["$@evaluator.run()"],
    }, b)


def metadata(b: Any) -> Dict[str, Any]:
    """``configs/metadata.json`` (MONAI bundle spec); its ``channel_def`` holds the bundle's labels."""
    ct = b.modality == "CT"
    low, high = HU_WINDOW
    intensity = f"HU window [{low:g}, {high:g}] scaled to [0, 1]" if ct else "z-score over non-zero voxels"
    classes = ", ".join(f"{k}: {v}" for k, v in {"0": "background", **b.labels}.items())
    return {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json",
        "version": "0.1.0",
        "changelog": {"0.1.0": "initial volseg bundle: training, evaluation, inference, multi-GPU overlay"},
        "monai_version": "1.6.1",
        "pytorch_version": "2.13.0",
        "numpy_version": "2.4.6",
        "required_packages_version": {
            "volseg": "0.1.0",
            "nibabel": "",
            "pydicom": "",
            "SimpleITK": "",
            "pytorch-ignite": "",
            "tensorboard": "",
            "matplotlib": "",
            "tqdm": "",
        },
        "supported_apps": {},
        "name": b.name,
        "task": b.task,
        "description": (f"3D {b.network} ({b.network_text}) trained with DiceCE on {b.modality} volumes resampled to "
                        f"{list(b.pixdim)} mm (RAS), {intensity}; sliding-window inference on {ROI[0]}^3 patches."),
        "authors": "volseg contributors",
        "copyright": "Copyright (c) volseg contributors",
        "data_source": "MSD-style dataset.json or nnU-Net imagesTr/labelsTr folders; volseg synthetic phantoms for tests",
        "data_type": "nibabel / DICOM / NRRD / MHA",
        "image_classes": "single-channel CT volume in HU" if ct else f"single-channel {b.modality} volume",
        "label_classes": classes,
        "pred_classes": classes,
        "eval_metrics": {"mean_dice": None},
        "intended_use": "Research and education only, not for clinical use",
        "references": ["Isensee et al., nnU-Net, Nature Methods 2021", "MONAI bundle specification"],
        "network_data_format": {
            "inputs": {
                "image": {
                    "type": "image",
                    "format": "hounsfield" if ct else "magnitude",
                    "modality": b.modality,
                    "num_channels": 1,
                    "spatial_shape": list(ROI),
                    "dtype": "float32",
                    "value_range": [0, 1] if ct else [],
                    "is_patch_data": True,
                    "channel_def": {"0": "image"},
                },
            },
            "outputs": {
                "pred": {
                    "type": "image",
                    "format": "segmentation",
                    "num_channels": len(b.labels) + 1,
                    "spatial_shape": list(ROI),
                    "dtype": "float32",
                    "value_range": [0, 1],
                    "is_patch_data": True,
                    "channel_def": {"0": "background", **b.labels},
                },
            },
        },
    }


#: ``configs/evaluate.json`` of every 3D bundle: the trained weights (MONAI's ``CheckpointLoader``,
#: ``weights_only=True``) on the validation split, Dice per label and per case
EVALUATE: Dict[str, Any] = {
    "model_path": "$@output_dir + '/models/model.pt'",
    "eval_dir": "$@output_dir + '/eval'",
    "validate#handlers": [
        {
            "_target_": "CheckpointLoader",
            "load_path": "@model_path",
            "load_dict": {"model": "@network"},
            "map_location": "@torch_device",
        },
        {"_target_": "volseg.training.PerLabelDice", "labels": "@labels"},
        {"_target_": "volseg.training.PerCaseDiceWriter", "labels": "@labels", "output_dir": "@eval_dir"},
    ],
    "run": ["$@validate#evaluator.run()"],
    "evaluating": ["$@validate#evaluator.run()"],
}

#: ``configs/multi_gpu_train.json`` of every bundle: the DDP overlay for ``torchrun``
MULTI_GPU_TRAIN: Dict[str, Any] = {
    "distributed": True,
    "initialize": ["$volseg.training.init_distributed()", "$volseg.training.seed_everything(@seed, @deterministic)"],
    "finalize": ["$torch.distributed.is_initialized() and torch.distributed.destroy_process_group()"],
}

#: ``configs/logging.conf`` of every bundle (``python -m monai.bundle run --logging_file``)
LOGGING_CONF = """[loggers]
keys=root

[handlers]
keys=consoleHandler

[formatters]
keys=fullFormatter

[logger_root]
level=INFO
handlers=consoleHandler

[handler_consoleHandler]
class=StreamHandler
level=INFO
formatter=fullFormatter
args=(sys.stdout,)

[formatter_fullFormatter]
format=%(asctime)s - %(name)s - %(levelname)s - %(message)s
"""

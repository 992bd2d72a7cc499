"""Transfer learning: weights from torchvision or from our own runs, and fine-tuning.

state_dict.py           read a torch.save file without torch, refusing code
torchvision_weights.py  from_torchvision(model_name, state_dict) -> variables
imagenet_weights.py     a zoo model with its ImageNet weights, and the input they expect
pretrained.py           config.init_from: a run starts from trained weights
finetune.py             config.freeze and config.lr_mults: what trains, at which rate
"""

from cnn_jax.transfer.state_dict import StateDictError, load_state_dict
from cnn_jax.transfer.torchvision_weights import (
    WeightMismatchError,
    from_torchvision,
    supported_models,
)

__all__ = [
    "StateDictError",
    "WeightMismatchError",
    "from_torchvision",
    "load_state_dict",
    "supported_models",
]

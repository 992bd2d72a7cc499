"""Transfer learning: weights from torchvision or from our own runs, and fine-tuning.

state_dict.py           read a torch.save file without torch, refusing code
torchvision_weights.py  from_torchvision(model_name, state_dict) -> variables
"""

from cnn_jax.transfer.state_dict import StateDictError, load_state_dict
from cnn_jax.transfer.torchvision_weights import (SUPPORTED, WeightMismatchError, from_torchvision)

__all__ = [
    "SUPPORTED",
    "StateDictError",
    "WeightMismatchError",
    "from_torchvision",
    "load_state_dict",
]

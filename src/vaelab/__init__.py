"""vaelab: variational autoencoders you can train, evaluate and explore.

    import vaelab
    result = vaelab.train(vaelab.Config(), "runs/digits")  # or `vaelab train --data digits`
    model = vaelab.load("runs/digits")
    z = model.encode(x).mean  # (B, D)

`train` and `load` are imported on first use, so `import vaelab.models` (or any lower layer)
does not pull in training, plotting and the rest.
"""

from typing import Any

from vaelab.config import Config, DataConfig, ModelConfig, ObjectiveConfig, TrainConfig
from vaelab.errors import VaelabError

__version__ = "0.1.0"
__all__ = ["Config", "DataConfig", "ModelConfig", "ObjectiveConfig", "TrainConfig",
           "VaelabError", "load", "train"]


def __getattr__(name: str) -> Any:
    if name == "train":
        from vaelab.workflows import train

        return train
    if name == "load":
        from vaelab.runfolder import load

        return load
    raise AttributeError(f"module 'vaelab' has no attribute {name!r}")

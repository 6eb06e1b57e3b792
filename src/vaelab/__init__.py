"""vaelab: variational autoencoders you can train, evaluate and explore.

    import vaelab
    result = vaelab.train(vaelab.Config(), "runs/digits")  # or `vaelab train --data digits`
    model = vaelab.load("runs/digits")
    z = model.encode(x).mean  # (B, D)
"""

from vaelab.config import Config, DataConfig, ModelConfig, ObjectiveConfig, TrainConfig
from vaelab.errors import VaelabError
from vaelab.runfolder import load
from vaelab.training import train

__version__ = "0.1.0"
__all__ = ["Config", "DataConfig", "ModelConfig", "ObjectiveConfig", "TrainConfig",
           "VaelabError", "load", "train"]

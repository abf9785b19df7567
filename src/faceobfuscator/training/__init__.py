"""Training the server's recognition network on a scheme's features (``faceobf train``).

Nothing here runs at import; heavy work starts in :func:`train`.
"""

from .config import TrainConfig, load_train_config
from .head import ArcFaceHead, arcface_logits
from .loop import train
from .schedule import poly_lr

__all__ = ["TrainConfig", "load_train_config", "ArcFaceHead", "arcface_logits", "train", "poly_lr"]

"""Training the server's recognition network on a scheme's features (``faceobf train``).

Nothing here runs at import; heavy work starts in :func:`train`.
"""

from faceobfuscator.research.training.config import TrainConfig, load_train_config
from faceobfuscator.research.training.head import ArcFaceHead, arcface_logits
from faceobfuscator.research.training.loop import train
from faceobfuscator.research.training.schedule import poly_lr

__all__ = ["TrainConfig", "load_train_config", "ArcFaceHead", "arcface_logits", "train", "poly_lr"]

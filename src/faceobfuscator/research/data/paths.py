"""Default places, once: where the datasets, aligned crops, training packs and committed
models are, and which folds of the benchmark protocols are held out for testing.

Relative paths are resolved from the working directory (the repository root, as the
Makefile runs). The committed models are found through :func:`project_home`, so that an
installed (not editable) package still finds them.
"""

from __future__ import annotations

import os
from pathlib import Path

from faceobfuscator.errors import ConfigError

__all__ = [
    "ALIGNED_ROOT",
    "DATASETS_ROOT",
    "HOME_ENV",
    "TEST_FOLDS",
    "TRAIN_PACK",
    "project_home",
]

#: the raw datasets (LFW, CFP, AT&T, ...); ``FACEOBF_DATASETS`` overrides where a command says so
DATASETS_ROOT = Path("../shared/datasets")
#: aligned crops made by ``faceobf data prepare``, one folder per dataset
ALIGNED_ROOT = Path("cache/aligned")
#: the training pack made by ``faceobf data pack``
TRAIN_PACK = Path("cache/train-pack.npz")
#: folds 6-10 of the LFW/CFP verification protocols: held out for testing, never trained on
TEST_FOLDS = (6, 7, 8, 9, 10)
#: the environment variable naming the project folder (the one that holds ``models/``)
HOME_ENV = "FACEOBF_HOME"


def project_home(needs: str = "models") -> Path | None:
    """The project folder that holds ``needs`` (a path relative to it): ``$FACEOBF_HOME`` if
    set, else the working directory or the nearest folder above it that holds ``needs``;
    None if there is none.

    Raises:
        ConfigError: ``FACEOBF_HOME`` is set but does not hold ``needs``.
    """
    home = os.environ.get(HOME_ENV)
    if home:
        if not (Path(home) / needs).exists():
            raise ConfigError(
                f"{HOME_ENV}={home} has no {needs}; point {HOME_ENV} at the FaceObfuscator "
                "checkout that holds the committed models, or unset it"
            )
        return Path(home)
    cwd = Path.cwd().resolve()
    for base in (cwd, *cwd.parents):
        if (base / needs).exists():
            return base
    return None

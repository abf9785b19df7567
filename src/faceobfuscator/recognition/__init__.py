"""recognition: backbones, protection schemes and model directories.

Loading the package registers the experiment variants (:mod:`.variants`: the schemes and
``weighted-*`` backbones of the paper's own experiments) beside the built-in ones, so a
model directory of any registered scheme loads wherever the registries are used."""

from faceobfuscator.recognition import variants as _variants  # noqa: F401

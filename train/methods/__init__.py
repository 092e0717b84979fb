"""The methods of the lineage; each module has ``build(backbone, cfg, num_images, mean, std)`` and ``PRESETS``."""
from . import instdisc

METHODS = {"instdisc": instdisc}

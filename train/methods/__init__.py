"""The methods of the lineage: each module holds one ``base.Method`` subclass, ``PRESETS`` and
``build(cfg, num_images, mean, std)`` (see ``base.py`` for the contract the engine relies on)."""
from . import byol, cmc, cpc, dino, instdisc, invaspread, moco, mocov2, mocov3, simclr, simclrv2, simsiam, swav

# the lineage's order: stage 1 (many ideas), stage 2 (the champions), stage 3 (no negatives), stage 4 (Transformers)
METHODS = {"instdisc": instdisc, "invaspread": invaspread, "cpc": cpc, "cmc": cmc,
           "moco": moco, "mocov2": mocov2, "simclr": simclr, "simclrv2": simclrv2,
           "swav": swav, "byol": byol, "simsiam": simsiam,
           "mocov3": mocov3, "dino": dino}

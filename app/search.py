"""A bank bound to the model that built it: query images in, top-k gallery items out."""
from __future__ import annotations

from pathlib import Path

from PIL import Image

import zoo

from . import bank as banks

MAX_SIDE = 1024  # query images are shrunk to this first: the models take small inputs, and huge ones cost time


class Searcher:
    """Loads the bank's model (refusing a stale bank) and answers ``search(image, k)``."""

    def __init__(self, bank: banks.Bank):
        fingerprint = banks.check_fresh(bank, bank.model)
        self.bank = bank
        self.name = Path(bank.model).name
        self.model = zoo.load(fingerprint["weights"])
        self.transform = zoo.transforms(fingerprint["weights"])

    def search(self, image: Image.Image, k: int) -> list[dict]:
        """The ``k`` most similar gallery items to ``image`` (any PIL mode or size), best first."""
        if max(image.size) > MAX_SIDE:
            image = image.copy()
            image.thumbnail((MAX_SIDE, MAX_SIDE))
        query = banks.embed(self.model, self.transform, [image])  # eval-mode forward: safe from many threads
        return self.bank.search(query, k)[0]

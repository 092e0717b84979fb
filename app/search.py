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
        return self.search_many([image], [k])[0]

    def search_many(self, images: list[Image.Image], ks: list[int]) -> list[list[dict]]:
        """One forward pass and one top-k for several queries (concurrent requests batched by the app)."""
        images = [_shrunk(image) for image in images]
        queries = banks.embed(self.model, self.transform, images)  # eval-mode forward: safe from many threads
        hits = self.bank.search(queries, max(ks))
        return [row[:k] for row, k in zip(hits, ks)]


def _shrunk(image: Image.Image) -> Image.Image:
    if max(image.size) <= MAX_SIDE:
        return image
    image = image.copy()
    image.thumbnail((MAX_SIDE, MAX_SIDE))
    return image

"""A bank bound to the model that built it: query images in, top-k gallery items out."""
from __future__ import annotations

from pathlib import Path

from PIL import Image

from . import bank as banks


class Searcher:
    """Loads the bank's model (refusing a stale bank) and answers ``search(image, k)``. ``opened``: the model as
    :func:`app.bank.open_model` gave it, when the caller has loaded it already."""

    def __init__(self, bank: banks.Bank, opened: tuple | None = None):
        self.model, self.transform, fingerprint = opened or banks.open_model(bank.model)
        banks.check_fresh(bank, fingerprint)  # against the very bytes loaded, not a second read of the file
        if self.model.num_features != bank.features.shape[1]:
            raise banks.BankError(f"bank {bank.path} holds {bank.features.shape[1]}-d features but {bank.model!r} "
                                  f"gives {self.model.num_features}-d ones. Fix: rebuild the bank.")
        self.bank = bank
        self.name = Path(bank.model).name

    def search(self, image: Image.Image, k: int) -> list[dict]:
        """The ``k`` most similar gallery items to ``image`` (any PIL mode or size), best first."""
        return self.search_many([image], [k])[0]

    def search_many(self, images: list[Image.Image], ks: list[int]) -> list[list[dict]]:
        """One forward pass and one top-k for several queries (concurrent requests batched by the app).

        Queries are taken as they are: ``gallery.open_image`` has already shrunk them as it decoded them.
        """
        queries = banks.embed(self.model, self.transform, images)  # eval-mode forward: safe from many threads
        hits = self.bank.search(queries, max(ks))
        return [row[:k] for row, k in zip(hits, ks)]


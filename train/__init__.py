"""Training: the methods of the contrastive lineage, their shared blocks and one engine."""

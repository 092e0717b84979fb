"""Similarity search over the zoo: feature banks (``app.bank``), their image sources (``app.gallery``),
queries (``app.search``), the Gradio app (``app.ui``) and the one-command demo (``app.demo``).

The app stands on ``zoo`` only; it never imports ``train`` (training runs as a subprocess).
"""

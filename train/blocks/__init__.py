"""Shared building blocks of the methods, each a small tested piece named after its paper."""

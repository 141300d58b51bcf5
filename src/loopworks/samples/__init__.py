"""Sample data sets, synthetic and made here (no copied text)."""

from __future__ import annotations

from loopworks.samples.reviews import generate_reviews, write_reviews

__all__ = ["generate_reviews", "write_reviews"]

"""The real Women's Clothing reviews (../shared/data): messy CSV in, a useful model out."""

from __future__ import annotations

import numpy as np

from loopworks.models import labeled_data_from_frame, read_labeled_data, train_model

from conftest import REAL_REVIEWS, needs_shared


@needs_shared(REAL_REVIEWS)
def test_baseline_on_real_reviews_is_well_above_chance() -> None:
    data = read_labeled_data(REAL_REVIEWS, rating_column="Rating", skip_invalid=True)
    assert data.text_column == "Review Text"
    assert data.skipped == {"empty_text": 845} and len(data) == 23486 - 845
    # Balanced subsample (1,500 per class) so chance is 1/3 and the test stays quick.
    rng = np.random.default_rng(0)
    rows = np.concatenate([rng.choice(np.flatnonzero(data.labels == c), 1500, replace=False)
                           for c in range(3)])
    import pandas as pd

    subset = labeled_data_from_frame(
        pd.DataFrame({"text": data.texts[rows], "label_id": data.labels[rows]}),
        source=f"{REAL_REVIEWS} (balanced sample)", seed=0)
    result = train_model("real", subset, features="word", save=False)
    ev = result.evaluation
    assert ev.rows == 450
    assert ev.accuracy > 0.6 and ev.macro_f1 > 0.6  # chance: 0.33
    assert ev.ece < 0.08
    assert ev.ece <= ev.ece_uncalibrated + 0.02

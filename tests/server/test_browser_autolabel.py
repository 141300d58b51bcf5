"""Automated labeling seen in a real browser: Playwright driving Debian's Chromium against
`loopworks serve`. An annotator's keyboard answer closes the first sample, the page says
more work comes back while the model runs its round, the next batch shows up on the page,
and an admin reads the round (machine labels, threshold, people's accuracy on gold items)
on the job's dashboard.

Needs /usr/bin/chromium and the `playwright` package (dev extra); skipped with the reason
when either is missing.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from loopworks.labeling.jobs import JobSpec, LabelingJobs
from loopworks.metadata import database_url, open_engine
from loopworks.samples import generate_reviews

from _browser import needs_browser, sign_in, snap
from conftest import running_server

pytestmark = needs_browser

LABELS = ["negative", "neutral", "positive"]
N_ITEMS = 1300
FIRST_SAMPLE = 260 + 130  # 20% validation, then a training sample of 10%
N_GOLD = 40
LEFT_FOR_THE_BROWSER = 2


def _reviews() -> tuple[list[tuple[str, dict[str, Any]]], dict[str, str]]:
    """1,300 distinct generated reviews as manifest items, every 30th of the first 1,200
    with its known answer (``gold``), and the true label of each text (from its stars)."""
    table = generate_reviews(1400, seed=2, broken=False).to_pandas()
    truth: dict[str, str] = {}
    for text, stars in zip(table.review_body, table.star_rating, strict=True):
        if text not in truth:  # a few texts repeat: keep the first, so a text has one label
            truth[text] = LABELS[0] if stars <= 2 else LABELS[1] if stars == 3 else LABELS[2]
        if len(truth) == N_ITEMS:
            break
    items: list[tuple[str, dict[str, Any]]] = []
    for i, (text, label) in enumerate(truth.items()):
        gold = {"gold": label} if i % 30 == 0 and i < 30 * N_GOLD else {}
        items.append((text, {"source": text, **gold}))
    return items, truth


def _submit_with_keyboard(page, label: str) -> None:
    """Choose the label with its number key and submit with Enter, as an annotator does."""
    page.keyboard.press(str(LABELS.index(label) + 1))
    assert page.get_by_role("radio", name=label, exact=True).is_checked()
    with page.expect_navigation():
        page.keyboard.press("Enter")


def _labeled(page) -> int:
    return int(page.inner_text("#progress").split("/")[0])


def test_next_batch_reaches_the_annotator_and_the_admin_sees_the_round(
        page, browser, tmp_path: Path) -> None:
    home = tmp_path / "home"
    jobs = LabelingJobs(open_engine(database_url(home)))
    jobs.workforce.add_team("crowd")
    ana = jobs.workforce.add_worker("ana", teams_=["crowd"])
    jobs.workforce.add_worker("boss", role="admin")
    items, truth = _reviews()
    jobs.create_job(JobSpec("reviews", "crowd", LABELS, auto_label={"target_accuracy": 0.95}),
                    items)
    counts = jobs.job("reviews").counts
    assert counts["unlabeled"] - counts["held"] == FIRST_SAMPLE
    # Most of the first sample answered through the library (fast; no server, no round).
    answered: set[str] = set()
    for _ in range(FIRST_SAMPLE - LEFT_FOR_THE_BROWSER):
        task = jobs.next_task("reviews", ana)
        assert task is not None
        jobs.submit("reviews", task.item_id, ana, truth[task.source])
        answered.add(task.source)

    with running_server(home, "operator-token") as url:
        sign_in(page, url, jobs.workforce, "ana")
        page.click("a[href='/jobs/reviews']")
        page.click("#start")
        # The last open items of the first sample, answered with the keyboard.
        for left in range(LEFT_FOR_THE_BROWSER, 0, -1):
            source = page.inner_text("classification-target")
            assert source in truth and source not in answered
            if left == LEFT_FOR_THE_BROWSER:
                snap(page, "autolabel-last-of-first-sample")
            _submit_with_keyboard(page, truth[source])
            answered.add(source)
            assert page.inner_text("#flash").startswith("Saved.")
        assert int(page.inner_text("#mine")) == FIRST_SAMPLE
        # The closing answer started the round: the page says work comes back (or, when
        # the round was already done, shows the next batch's first task).
        if page.locator("#nothing-left").count():
            assert "back here shortly" in page.inner_text("#flash")
            snap(page, "autolabel-round-running")
        # Reload until a task from the next batch is there.
        deadline = time.monotonic() + 30
        while not page.locator("classification-target").count():
            assert time.monotonic() < deadline, page.inner_text("main")
            if page.locator("#start").count():
                page.click("#start")  # the next batch is open: take a task
                continue
            time.sleep(0.25)
            page.reload()
        source = page.inner_text("classification-target")
        assert source in truth and source not in answered  # a held item, now for people
        # The machine labels count in the job's progress.
        assert _labeled(page) > FIRST_SAMPLE
        snap(page, "autolabel-next-batch")
        labeled_before = _labeled(page)
        _submit_with_keyboard(page, truth[source])
        assert page.inner_text("#flash") == "Saved."
        assert int(page.inner_text("#mine")) == FIRST_SAMPLE + 1
        assert _labeled(page) == labeled_before + 1
        following = page.inner_text("classification-target")  # the batch goes on
        assert following in truth and following not in answered | {source}

        # An admin, in a browser of their own, reads the round on the job's dashboard.
        context = browser.new_context(viewport={"width": 1100, "height": 800})
        errors: list[str] = []
        try:
            admin = context.new_page()
            admin.on("pageerror", lambda exc: errors.append(str(exc)))
            sign_in(admin, url, jobs.workforce, "boss")
            admin.click("tr[data-job=reviews] >> text=dashboard")
            admin.wait_for_selector("#rounds")
            snap(admin, "autolabel-admin-rounds")
            headers = admin.locator("#rounds thead th").all_inner_texts()
            rows = admin.locator("#rounds tbody tr")
            assert rows.count() == 1
            cells = dict(zip(headers, rows.first.locator("td").all_inner_texts(), strict=True))
        finally:
            context.close()
        assert not errors, f"JavaScript errors on the admin page: {errors}"
    assert cells["Round"] == "1"
    assert cells["Human labels"] == str(FIRST_SAMPLE)
    assert int(cells["Machine labels"]) > 0
    assert 0 < float(cells["Threshold"]) < 1
    assert re.fullmatch(rf"[01]\.\d{{3}} \({N_GOLD} gold\)", cells["People right"]), cells
    assert cells["Model"] == "autolabel-reviews:1"

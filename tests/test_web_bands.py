"""The presence chart's layout: each device's name stands clear of every band."""

from __future__ import annotations

import re

from homepoll.web.charts import band_chart
from homepoll.web.queries import RANGES, Series

FONT_PX = 12  # .lane in web/style.py: a label spans baseline - 10 .. baseline + 3 (descenders)
CLEARANCE = 2


def test_lane_labels_do_not_touch_any_band() -> None:
    view = RANGES["24h"]
    end = 10 * view.span_ms
    start = end - view.span_ms
    everywhere = [(ms, 1.0) for ms in range(start, end, view.bucket_ms)]  # a band end to end
    series = [
        Series(i, "hue", f"dev{i}", name, "presence", "bool", list(everywhere))
        for i, name in enumerate(("Hall sensor", "Kitchen sensor", "Living room sensor"))
    ]
    svg = band_chart("Presence", series, view, end, "presence")
    labels = [float(y) for y in re.findall(r'<text class="lane" x="[\d.]+" y="([\d.]+)"', svg)]
    bands = [
        (float(y), float(y) + float(h))
        for y, h in re.findall(
            r'<rect class="band[^"]*"[^>]* y="([\d.]+)" [^>]*height="([\d.]+)"', svg
        )
    ]
    assert len(labels) == 3 and len(bands) == 3
    for baseline in labels:
        top, bottom = baseline - FONT_PX + 2, baseline + 3
        for band_top, band_bottom in bands:
            assert bottom + CLEARANCE <= band_top or band_bottom + CLEARANCE <= top, (
                baseline,
                (band_top, band_bottom),
            )
    assert all(b - a >= 8 for a, b in bands)  # still a visible band

"""The lecture's pictures: each demo command writes a PNG."""

from __future__ import annotations

from PIL import Image

from dgmlab.demos import DEMOS, main


def test_every_demo_writes_a_png(tmp_path):
    paths = main(["all", "--out", str(tmp_path)])
    assert len(paths) == len(DEMOS)
    for path in paths:
        with Image.open(path) as im:
            assert im.format == "PNG" and im.size[0] > 400 and im.size[1] > 150

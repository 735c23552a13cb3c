"""data_sample/ is exactly what its committed generator draws."""

import numpy as np
from PIL import Image

from fruits_tools import sample_data
from tests.conftest import ROOT


def test_data_sample_matches_its_generator(tmp_path):
    written = sample_data.write_sample(tmp_path)
    committed = sorted((ROOT / "data_sample").rglob("*.jpg"))
    assert [p.relative_to(tmp_path) for p in written] == [
        p.relative_to(ROOT / "data_sample") for p in committed
    ]
    assert len(committed) == sum(sample_data.SPLITS.values()) * len(sample_data.CLASSES)
    for new, old in zip(written, committed):
        a = np.asarray(Image.open(new), dtype=np.int16)
        b = np.asarray(Image.open(old), dtype=np.int16)
        assert a.shape == b.shape == (100, 100, 3)
        # JPEG encoders may differ by a level or two between Pillow builds; drawings may not
        assert np.abs(a - b).mean() < 1.0, new

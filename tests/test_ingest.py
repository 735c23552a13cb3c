import pytest

from helpers.spark import ingest
from tests import imagefactory as mk

pytestmark = pytest.mark.spark


def test_labels_and_splits_from_folders(spark, tmp_path):
    files = {
        "Training/Apple Braeburn/1_100.jpg": mk.rgb_jpeg(),
        "Training/Pêche, plate/UPPER.JPG": mk.rgb_jpeg(),
        "test/Kiwi/photo one.Jpeg": mk.rgb_jpeg(),
        "Test/Kiwi/x.png": mk.rgba_png(255),
        "phone uploads/Lemon/img.jpg": mk.rgb_jpeg(),
        "Training/Kiwi/notes.txt": b"not an image",
        "Training/Kiwi/empty one.jpg": b"",
        "Training/Kiwi/IMG 12:30.jpg": mk.rgb_jpeg(),
        "Training/_Hidden Class/_underscore.jpg": mk.rgb_jpeg(),
    }
    root = tmp_path / "in"
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)

    listed = ingest.list_images(spark, str(root), str(tmp_path / "listing"))
    rows = {r.path.rsplit("/", 1)[-1]: r for r in listed.images.collect()}
    assert set(rows) == {
        "1_100.jpg", "UPPER.JPG", "photo one.Jpeg", "x.png", "img.jpg", "empty one.jpg",
        "IMG 12:30.jpg", "_underscore.jpg",
    }  # fmt: skip
    assert listed.images.columns == ingest.IMAGE_COLUMNS
    assert rows["empty one.jpg"].size_bytes == 0 and rows["empty one.jpg"].label == "Kiwi"
    assert (rows["1_100.jpg"].label, rows["1_100.jpg"].split) == ("Apple Braeburn", "Training")
    assert (rows["UPPER.JPG"].label, rows["UPPER.JPG"].split) == ("Pêche, plate", "Training")
    assert (rows["photo one.Jpeg"].label, rows["photo one.Jpeg"].split) == ("Kiwi", "Test")
    assert (rows["img.jpg"].label, rows["img.jpg"].split) == ("Lemon", None)
    assert rows["_underscore.jpg"].label == "_Hidden Class"
    assert rows["x.png"].size_bytes == len(files["Test/Kiwi/x.png"])
    assert rows["x.png"].path == "file:" + (root / "Test/Kiwi/x.png").as_posix()
    assert listed.listing.count() == len(files) == listed.summary.found
    (ignored,) = listed.listing.filter("ignored is not null").collect()
    assert ignored.path.endswith("notes.txt") and ignored.ignored.startswith("not an image")
    assert listed.images.rdd.getNumPartitions() == spark.sparkContext.defaultParallelism


def test_outcome_counts(spark, tmp_path):
    root = tmp_path / "in" / "Apple"
    root.mkdir(parents=True)
    for i in range(4):
        (root / f"{i}.jpg").write_bytes(mk.rgb_jpeg())
    listed = ingest.list_images(spark, str(root.parent), str(tmp_path / "listing"))
    paths = sorted(r.path for r in listed.images.collect())
    results = spark.createDataFrame(
        [(paths[0], None), (paths[1], None), (paths[2], "corrupt")], "path string, error string"
    )
    assert ingest.outcome_counts(listed.images, results) == (2, 1, 1)

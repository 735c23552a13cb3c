import pytest

from helpers.ingest import InputError, check_local_input, list_images
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
        "Training/Kiwi/empty one.jpg": b"",  # Spark's scan skips these; we must not
    }
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)

    rows = {r.path.rsplit("/", 1)[-1]: r for r in list_images(spark, str(tmp_path)).collect()}
    assert set(rows) == {
        "1_100.jpg",
        "UPPER.JPG",
        "photo one.Jpeg",
        "x.png",
        "img.jpg",
        "empty one.jpg",
    }
    assert rows["empty one.jpg"].size_bytes == 0 and rows["empty one.jpg"].content is None
    assert rows["empty one.jpg"].label == "Kiwi"
    assert (rows["1_100.jpg"].label, rows["1_100.jpg"].split) == ("Apple Braeburn", "Training")
    assert (rows["UPPER.JPG"].label, rows["UPPER.JPG"].split) == ("Pêche, plate", "Training")
    assert (rows["photo one.Jpeg"].label, rows["photo one.Jpeg"].split) == ("Kiwi", "Test")
    assert (rows["img.jpg"].label, rows["img.jpg"].split) == ("Lemon", None)
    assert rows["x.png"].size_bytes == len(files["Test/Kiwi/x.png"])
    assert bytes(rows["x.png"].content) == files["Test/Kiwi/x.png"]


def test_missing_input_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="input not found"):
        check_local_input(str(tmp_path / "nope"))


def test_input_without_images_is_a_clear_error(tmp_path):
    (tmp_path / "Training" / "Empty").mkdir(parents=True)
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(InputError, match="no images"):
        check_local_input(str(tmp_path))

"""The input listing and file reading, without Spark: rules, the local walk, reading errors,
reconciliation and memory bounds."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from helpers import storage
from helpers.core import inputs
from tests import hostile
from tests import imagefactory as mk
from tests.conftest import ROOT


@pytest.mark.parametrize(
    ("parts", "kind", "reason"),
    [
        (("Apple", "IMG 12:30.jpg"), inputs.FILE, None),
        (("Apple", "_underscore.jpg"), inputs.FILE, None),
        (("_Hidden Class", "a.JPEG"), inputs.FILE, None),
        (("Apple", "x.png"), inputs.FILE, None),
        (("Apple", "notes.txt"), inputs.FILE, "not an image extension (.txt)"),
        (("Apple", "README"), inputs.FILE, "not an image extension (none)"),
        (("Apple", ".DS_Store"), inputs.FILE, "operating-system metadata file"),
        (("Apple", "Thumbs.db"), inputs.FILE, "operating-system metadata file"),
        (("Apple", "._x.jpg"), inputs.FILE, "macOS AppleDouble file ('._' prefix)"),
        (("Apple", ".x.jpg"), inputs.FILE, "hidden file (name starts with '.')"),
        ((".git", "Apple", "x.jpg"), inputs.FILE, "inside a hidden folder (.git)"),
        (("_staging", "run", "x.jpg"), inputs.FILE, "inside this project's staging folder"),
        (("_temporary", "0", "x.jpg"), inputs.FILE, "inside a data tool's folder (_temporary)"),
        (("_SUCCESS",), inputs.FILE, "marker file written by a data tool"),
        (("Apple_$folder$",), inputs.FILE, "marker file written by a data tool"),
        (("_committed_42",), inputs.FILE, "marker file written by a data tool"),
        (("_started_42",), inputs.FILE, "marker file written by a data tool"),
        (("x.jpg",), inputs.DIRECTORY, "folder named like an image"),
        (("x.jpg",), inputs.BROKEN_LINK, "broken link"),
        (("x.jpg",), inputs.SPECIAL, "not a regular file"),
        (("Apple",), inputs.FOLDER_MARKER, "S3 folder marker"),
        (("Apple",), inputs.LINKED_FOLDER, "link to a folder already listed"),
    ],
)
def test_classify(parts, kind, reason):
    got = inputs.classify(parts, kind)
    assert got == reason if reason is None else got.startswith(reason), got


@pytest.mark.parametrize(
    ("root", "parts", "expected"),
    [
        ("data", ("Training", "Apple Braeburn", "1.jpg"), ("Apple Braeburn", "Training")),
        ("data", ("training", "Apple", "session2", "x.jpg"), ("Apple", "Training")),
        ("data", ("TEST", "Kiwi", "x.jpg"), ("Kiwi", "Test")),
        ("data", ("Training", "x.jpg"), (None, "Training")),
        ("Training", ("Apple", "x.jpg"), ("Apple", "Training")),
        ("data", ("phone uploads", "Lemon", "x.jpg"), ("Lemon", None)),
        ("Lemon", ("x.jpg",), ("Lemon", None)),
        ("data", ("fruits-360", "Test", "Kiwi", "x.jpg"), ("Kiwi", "Test")),
    ],
)
def test_label_and_split(root, parts, expected):
    assert inputs.label_and_split(root, parts) == expected


def _outcomes(entries: list[inputs.Entry], root: Path) -> dict[str, tuple[str, str | None]]:
    prefix = "file:" + root.as_posix() + "/"
    out = {}
    for e in entries:
        name = e.path[len(prefix) :]
        if e.ignored:
            out[name] = ("ignored", e.ignored)
        elif e.error:
            out[name] = ("failed", e.error)
        else:
            out[name] = ("image", None)
    return out


def test_local_scan_sees_every_entry_once(tmp_path):
    root = tmp_path / "in"
    expected = hostile.build_local(root)
    summary = inputs.ListingSummary(str(root))
    entries = list(inputs.scan(str(root), summary))
    got = _outcomes(entries, root)
    assert len(entries) == len(got) == hostile.independent_count(root) == len(expected)
    for name, (outcome, reason) in expected.items():
        listed = got[name]
        if outcome == "ignored":
            assert listed[0] == "ignored" and listed[1].startswith(reason), (name, listed)
        else:  # read later: featurized or failed when read
            assert listed == ("image", None), (name, listed)
    assert summary.found == len(entries) == summary.to_read + summary.ignored + summary.failed
    assert summary.empty_folders == ["file:" + (root / "Training/Empty class").as_posix()]
    by_name = {e.path.rsplit("/", 1)[-1]: e for e in entries}
    for name, label_split in hostile.labels().items():
        entry = by_name[name.rsplit("/", 1)[-1]]
        assert (entry.label, entry.split) == label_split, name
    assert by_name["_underscore.jpg"].size_bytes == len(mk.rgb_jpeg())


def test_input_that_is_one_image(tmp_path):
    photo = tmp_path / "Lemon" / "IMG 12:30.jpg"
    photo.parent.mkdir()
    photo.write_bytes(mk.rgb_jpeg())
    (entry,) = inputs.scan(str(photo))
    assert (entry.path, entry.label, entry.ignored) == ("file:" + photo.as_posix(), "Lemon", None)
    assert inputs.read_file(entry.path) == photo.read_bytes()


def test_missing_and_empty_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(inputs.InputError, match="input not found"):
        inputs.write_listing(str(tmp_path / "nope"), str(tmp_path / "listing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(inputs.InputError, match="no files under"):
        inputs.write_listing(str(tmp_path / "empty"), str(tmp_path / "listing"))
    (tmp_path / "docs" / "Training" / "Empty").mkdir(parents=True)
    (tmp_path / "docs" / "readme.txt").write_text("hello")
    with pytest.raises(inputs.InputError, match=r"no images to read .* ignored 1.*readme.txt"):
        inputs.write_listing(str(tmp_path / "docs"), str(tmp_path / "listing"))
    with pytest.raises(inputs.InputError, match="local folder or file, or an s3:// URI"):
        inputs.write_listing("ftp://host/photos", str(tmp_path / "listing"))
    assert not (tmp_path / "listing").exists()


def test_read_errors_are_reasons(tmp_path):
    gone = "file:" + (tmp_path / "gone.jpg").as_posix()
    with pytest.raises(inputs.ReadError, match="file vanished: deleted after the input was listed"):
        inputs.read_file(gone)
    (tmp_path / "was a file.jpg").mkdir()
    with pytest.raises(inputs.ReadError, match="is a folder now"):
        inputs.read_file("file:" + (tmp_path / "was a file.jpg").as_posix())
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\0" * 2048)
    with pytest.raises(inputs.ReadError, match="file too large"):
        inputs.read_file("file:" + big.as_posix(), max_bytes=1024)
    odd = tmp_path / "100% #1?.jpg"
    odd.write_bytes(b"x")
    assert inputs.read_file("file:" + odd.as_posix()) == b"x"


def test_permissions_for_a_user_who_is_not_root():
    """A file and a folder the user may not read: failed with the reason, the walk goes on.
    Run as the unprivileged ``nobody`` user (root may read anything)."""
    base = Path(tempfile.mkdtemp(prefix="fruits-perm-"))
    try:
        base.chmod(0o755)
        root = base / "in"
        (root / "Apple").mkdir(parents=True)
        (root / "Apple" / "ok.jpg").write_bytes(mk.rgb_jpeg())
        (root / "Apple" / "locked.jpg").write_bytes(mk.rgb_jpeg())
        (root / "Apple" / "locked.jpg").chmod(0)
        (root / "Locked class").mkdir()
        (root / "Locked class" / "x.jpg").write_bytes(mk.rgb_jpeg())
        (root / "Locked class").chmod(0)
        user = pwd.getpwnam("nobody") if os.geteuid() == 0 else None
        rows = _as_user(user, lambda: _scan_and_read(root))
        assert rows["Apple/ok.jpg"] == (None, "ok")
        assert rows["Apple/locked.jpg"] == (None, "cannot read: permission denied")
        assert rows["Locked class/"] == ("folder cannot be listed: permission denied", None)
    finally:
        for path in (base / "in" / "Locked class", base / "in" / "Apple" / "locked.jpg"):
            path.chmod(0o755)
        import shutil

        shutil.rmtree(base)


def _scan_and_read(root: Path) -> dict:
    rows = {}
    for e in inputs.scan(str(root)):
        read = None
        if e.ignored is None and e.error is None:
            try:
                inputs.read_file(e.path)
                read = "ok"
            except inputs.ReadError as err:
                read = str(err)
        rows[e.path.rsplit("/in/", 1)[1]] = (e.error, read)
    return rows


def _as_user(user, work):
    """``work()`` in a forked child running as ``user`` (None: as this user); its result."""
    import json

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges, work, report, leave without cleanup handlers
        code = 0
        try:
            os.close(read_end)
            if user is not None:
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)
            with os.fdopen(write_end, "w") as out:
                json.dump(work(), out)
        except BaseException:
            code = 1
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        text = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the unprivileged child failed"
    return {k: tuple(v) for k, v in json.loads(text).items()}


def test_reconcile_adds_up_and_refuses_a_mismatch():
    summary = inputs.ListingSummary("in", found=10, to_read=7, failed=1, ignored=2)
    summary.ignored_by_reason.update({"hidden file (name starts with '.')": 2})
    files = inputs.reconcile(summary, ok=5, failed=1, not_run=1)
    assert (files["found"], files["featurized"], files["failed"], files["ignored"]) == (10, 5, 2, 3)
    assert files["found"] == files["featurized"] + files["failed"] + files["ignored"]
    assert files["ignored_by_reason"]["left out by sample_fraction"] == 1
    assert inputs.reconciliation_line(files) == "found 10 = 5 featurized + 2 failed + 3 ignored"
    with pytest.raises(AssertionError, match="7 images listed"):
        inputs.reconcile(summary, ok=5, failed=1, not_run=0)


def test_outcomes_from_counts_refuse_missing_or_extra_rows():
    counts = [{"ok": 3, "failed": 1}, {"ok": 2, "failed": 0}]
    assert inputs.outcomes(counts, to_read=6, sampled=False) == (5, 1, 0)
    assert inputs.outcomes(counts, to_read=9, sampled=True) == (5, 1, 3)
    # A lost partition is a defect, not "left out by sample_fraction".
    with pytest.raises(AssertionError, match="9 images listed but 6 result rows: 3 missing"):
        inputs.outcomes(counts, to_read=9, sampled=False)
    with pytest.raises(AssertionError, match="2 extra"):
        inputs.outcomes(counts, to_read=4, sampled=True)


def test_listing_lists_are_capped_but_counts_complete(tmp_path, monkeypatch):
    monkeypatch.setattr(inputs, "MAX_EXAMPLES", 3)
    root = tmp_path / "in"
    (root / "Apple").mkdir(parents=True)
    (root / "Apple" / "x.jpg").write_bytes(mk.rgb_jpeg())
    for i in range(10):
        (root / "Apple" / f"note{i}.txt").write_text("x")
    summary = inputs.write_listing(str(root), str(tmp_path / "listing"))
    assert (summary.found, summary.ignored, len(summary.examples)) == (11, 10, 3)
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "listing" / "part-00000.parquet")
    assert table.num_rows == 11 and table.column_names == list(inputs.LISTING_COLUMNS)


def test_a_large_jpeg_is_decoded_in_bounded_memory(tmp_path):
    """12000x9000 pixels (about 30 MB of JPEG): full decoding would need 324 MB of pixels;
    draft mode decodes at 1/8 scale. Measured in a fresh process: peak RSS growth."""
    photo = tmp_path / "big.jpg"
    photo.write_bytes(hostile.big_jpeg())
    script = textwrap.dedent(
        f"""
        import resource
        from helpers.core import images, inputs
        data = inputs.read_file({"file:" + photo.as_posix()!r})
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        pixels = images.decode_rgb(data, (224, 224))
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(len(data), pixels.shape, (after - before) // 1024)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    size, shape, grown_mb = done.stdout.split(" ", 1)[0], None, int(done.stdout.split()[-1])
    assert int(size) > 20 * 2**20
    assert "(224, 224, 3)" in done.stdout
    assert grown_mb < 64, f"decoding grew the process by {grown_mb} MB"
    del shape


def test_s3_uris_keep_odd_keys():
    assert storage.split_s3("s3://b/Training/100% #1?.jpg") == ("b", "Training/100% #1?.jpg")
    assert storage.split_s3("s3a://b/a:b/c+d.jpg") == ("b", "a:b/c+d.jpg")
    assert storage.local_path("file:/a b/100% #1?.jpg") == Path("/a b/100% #1?.jpg")
    assert storage.local_path("file:///a%20b/x.jpg") == Path("/a b/x.jpg")


def test_s3_listing_and_reading(aws_local):
    """The S3 side against the local S3 server: prefixes with or without '/', one object as
    the input, folder markers, a missing bucket, an object gone after listing."""
    import boto3

    client = boto3.client("s3")
    client.create_bucket(
        Bucket="fruits-in", CreateBucketConfiguration={"LocationConstraint": "eu-west-3"}
    )
    keys = {
        "in/Training/Apple/IMG 12:30.jpg": mk.rgb_jpeg(),
        "in/Training/Apple/notes.txt": b"x",
        "in/Training/Empty/": b"",
        "in/Training/Kiwi_$folder$": b"",
        "in/top.jpg": mk.rgb_jpeg(),
        "inside-not/x.jpg": mk.rgb_jpeg(),  # shares the prefix "in" but not the folder
    }
    for key, body in keys.items():
        client.put_object(Bucket="fruits-in", Key=key, Body=body)

    for uri in ("s3://fruits-in/in", "s3://fruits-in/in/"):
        summary = inputs.ListingSummary(uri)
        entries = {e.path: e for e in inputs.scan(uri, summary)}
        assert set(entries) == {f"s3://fruits-in/{k}" for k in keys if k.startswith("in/")}
        apple = entries["s3://fruits-in/in/Training/Apple/IMG 12:30.jpg"]
        assert (apple.label, apple.split, apple.ignored) == ("Apple", "Training", None)
        assert entries["s3://fruits-in/in/top.jpg"].label == "in"
        assert entries["s3://fruits-in/in/Training/Empty/"].ignored.startswith("S3 folder marker")
        assert entries["s3://fruits-in/in/Training/Kiwi_$folder$"].ignored.startswith("marker")
        assert (summary.found, summary.to_read, summary.ignored) == (5, 2, 3)
        assert summary.empty_folders == ["s3://fruits-in/in/Training/Empty/"]

    (one,) = inputs.scan("s3a://fruits-in/in/Training/Apple/IMG 12:30.jpg")
    assert (one.path, one.label) == ("s3a://fruits-in/in/Training/Apple/IMG 12:30.jpg", "Apple")
    assert inputs.read_file(one.path) == keys["in/Training/Apple/IMG 12:30.jpg"]
    client.delete_object(Bucket="fruits-in", Key="in/Training/Apple/IMG 12:30.jpg")
    with pytest.raises(inputs.ReadError, match="object vanished"):
        inputs.read_file(one.path)
    with pytest.raises(inputs.InputError, match="input not found: s3://no-such-bucket-3/x"):
        list(inputs.scan("s3://no-such-bucket-3/x"))
    with pytest.raises(inputs.InputError, match="no files under s3://fruits-in/nothing"):
        inputs.write_listing("s3://fruits-in/nothing", "s3://fruits-in/listing")


def test_predict_expands_an_s3_prefix_to_its_images(aws_local):
    """``predict s3://bucket/prefix``: the images under it, by the chain's input rules (an S3
    folder was read as one photo, and failed)."""
    import boto3

    from helpers.core.predict import expand_photos

    client = boto3.client("s3", region_name="eu-west-3")
    client.create_bucket(Bucket="fruits-photos",
                         CreateBucketConfiguration={"LocationConstraint": "eu-west-3"})  # fmt: skip
    for key in ("Test/Apple/a.jpg", "Test/Apple/b.png", "Test/Apple/notes.txt", "Notes/n.txt"):
        client.put_object(Bucket="fruits-photos", Key=key, Body=b"x")
    assert expand_photos(["s3://fruits-photos/Test"]) == [
        "s3://fruits-photos/Test/Apple/a.jpg",
        "s3://fruits-photos/Test/Apple/b.png",
    ]
    assert expand_photos(["s3://fruits-photos/Test/Apple/a.jpg"]) == [
        "s3://fruits-photos/Test/Apple/a.jpg"
    ]
    with pytest.raises(FileNotFoundError, match="no images under s3://fruits-photos/Notes"):
        expand_photos(["s3://fruits-photos/Notes/"])

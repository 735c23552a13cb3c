from pathlib import Path

import pytest

from helpers import storage


@pytest.mark.parametrize(
    "uri,expected",
    [
        ("data/x", ""),
        ("/abs/x", ""),
        ("file:///a/b", "file"),
        ("s3://b/k", "s3"),
        ("S3A://b/k", "s3a"),
    ],
)
def test_scheme(uri, expected):
    assert storage.scheme(uri) == expected


def test_local_paths_become_absolute_file_uris(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = storage.to_spark_uri("data sample/Training")
    assert uri == "file:" + (tmp_path / "data sample" / "Training").as_posix()
    assert storage.to_spark_uri(uri) == uri
    assert storage.to_spark_uri("s3://bucket/prefix") == "s3://bucket/prefix"
    assert storage.to_uri("data sample") == (tmp_path / "data sample").as_uri()


def test_join():
    assert storage.join("s3://b/out/", "features") == "s3://b/out/features"
    assert storage.join("out", "features") == str(Path("out") / "features")


def test_redact_removes_credentials():
    assert storage.redact("s3a://KEY:SECRET@bucket/p") == "s3a://bucket/p"
    assert storage.redact("s3://bucket/p") == "s3://bucket/p"


def test_split_s3():
    assert storage.split_s3("s3://bucket/a/b.json") == ("bucket", "a/b.json")
    with pytest.raises(ValueError):
        storage.split_s3("/local/file")


def test_local_write_and_read(tmp_path):
    target = tmp_path / "new" / "report.json"
    storage.write_bytes(str(target), b"{}")
    assert storage.read_bytes(target.as_uri()) == b"{}"
    assert [p.name for p in target.parent.iterdir()] == ["report.json"]

"""How the server finds image files from the manifest's URIs."""

import boto3
import pyarrow as pa
import pytest
from moto import mock_aws
from survey_helpers import make_config, make_manifest

from hitkit.study.images import ImageError, ImageStore, image_uris


def test_manifest_uris_cover_iris_targets_and_seeds():
    config = make_config(models=2, losses=1, targets=3)
    uris = image_uris(make_manifest(config))
    assert uris["iri-m0-l0-000"] == "iris/iri-m0-l0-000.png"
    assert uris["target-002"] == "iris/targets/target-002.png"
    assert uris["seed-iri-m1-l0-001"] == "iris/seeds/iri-m1-l0-001.png"


def test_relative_absolute_and_file_uris(tmp_path):
    (tmp_path / "study" / "iris").mkdir(parents=True)
    (tmp_path / "study" / "iris" / "a.png").write_bytes(b"A")
    (tmp_path / "b.png").write_bytes(b"B")
    store = ImageStore(tmp_path / "study", {
        "a": "iris/a.png", "b": str(tmp_path / "b.png"), "c": (tmp_path / "b.png").as_uri(),
        "gone": "iris/missing.png"})
    assert store.read("a") == b"A" and store.read("b") == b"B" and store.read("c") == b"B"
    assert store.media_type("a") == "image/png"
    with pytest.raises(ImageError, match="missing.png"):
        store.read("gone")
    with pytest.raises(ImageError, match="not in the manifest"):
        store.read("nothing")


def test_s3_uris_are_fetched_once(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="iris")
        s3.put_object(Bucket="iris", Key="study/abc.png", Body=b"PNGDATA")
        store = ImageStore(tmp_path, {"x": "s3://iris/study/abc.png", "y": "s3://iris/none.png"})
        assert store.read("x") == b"PNGDATA"
        s3.delete_object(Bucket="iris", Key="study/abc.png")
        assert store.read("x") == b"PNGDATA"  # served from memory
        with pytest.raises(ImageError, match="cannot fetch"):
            store.read("y")


def test_one_image_id_must_name_one_image():
    config = make_config(models=2, losses=1, targets=2)
    manifest = make_manifest(config)
    uris = manifest.column("target_uri").to_pylist()
    uris[-1] = "iris/elsewhere.png"
    broken = manifest.set_column(manifest.schema.get_field_index("target_uri"), "target_uri",
                                 pa.array(uris))
    with pytest.raises(ImageError, match="has two URIs"):
        image_uris(broken)

import shutil

import numpy as np
import pytest

from helpers import config
from helpers.core import backbones as models
from helpers.core import recipe
from helpers.core.backbones import get_backbone
from helpers.core.inference import featurize_batch, load_inference_fn
from helpers.core.recipe import WeightsNotFoundError, resolve_weights
from tests import imagefactory as mk

MOBILENET = get_backbone("mobilenet_v2")


def test_registry_lookup_is_forgiving_about_spelling():
    assert get_backbone("MobileNet-V2") is MOBILENET
    with pytest.raises(ValueError, match="unknown model_name 'alexnet'"):
        get_backbone("alexnet")


def test_weights_found_in_shared_models_folder(mobilenet_weights):
    assert mobilenet_weights.endswith(MOBILENET.weights_file)
    assert str(config.shared_dir()) in mobilenet_weights


@pytest.fixture
def no_weights_anywhere(tmp_path, monkeypatch):
    """Empty Keras cache and no shared folder: nothing to find."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv(config.ENV_SHARED_DIR, str(tmp_path / "no-shared"))
    monkeypatch.delenv(config.ENV_MODELS_DIR, raising=False)
    return tmp_path


def test_keras_cache_is_searched_first(no_weights_anywhere, mobilenet_weights):
    cache = no_weights_anywhere / "keras" / "models"
    cache.mkdir(parents=True)
    shutil.copy(mobilenet_weights, cache / MOBILENET.weights_file)
    assert resolve_weights(MOBILENET, download=False) == str(cache / MOBILENET.weights_file)


def test_models_dir_variable_is_searched(no_weights_anywhere, mobilenet_weights, monkeypatch):
    folder = no_weights_anywhere / "my-models"
    folder.mkdir()
    (folder / MOBILENET.weights_file).symlink_to(mobilenet_weights)
    monkeypatch.setenv(config.ENV_MODELS_DIR, str(folder))
    assert resolve_weights(MOBILENET, download=False) == str(folder / MOBILENET.weights_file)


def test_missing_weights_stop_with_one_clear_message(no_weights_anywhere):
    with pytest.raises(WeightsNotFoundError) as err:
        resolve_weights(MOBILENET, download=False)
    message = str(err.value)
    assert MOBILENET.weights_file in message
    assert MOBILENET.weights_url in message
    assert str(recipe.keras_cache_dir()) in message


def test_failed_download_is_reported_not_replaced_by_random_weights(no_weights_anywhere):
    # A closed local port: the real Keras download code runs and fails at once.
    broken = models.Backbone(**{**MOBILENET.__dict__, "weights_url": "http://127.0.0.1:9/"})
    with pytest.raises(WeightsNotFoundError, match="download failed"):
        resolve_weights(broken, download=True)


def test_explicit_weights_file(mobilenet_weights, tmp_path):
    assert resolve_weights(MOBILENET, mobilenet_weights) == mobilenet_weights
    with pytest.raises(WeightsNotFoundError, match="not found"):
        resolve_weights(MOBILENET, str(tmp_path / "nope.h5"))


def test_random_weights_only_when_asked():
    assert resolve_weights(MOBILENET, "random") is None


@pytest.mark.parametrize("name", ["resnet50", "vgg16", "efficientnet_b0"])
def test_other_backbones_share_the_code_path(name):
    backbone = get_backbone(name)
    model_fn = load_inference_fn(name, None)
    contents = [mk.rgb_jpeg(), b"", mk.grey_jpeg()]
    out = featurize_batch(backbone, model_fn, contents, batch_size=2)
    assert out["error"].tolist()[1].startswith("empty file")
    vectors = [f for f in out["features"] if f is not None]
    assert len(vectors) == 2
    assert all(v.shape == (backbone.feature_dim,) and v.dtype == np.float32 for v in vectors)

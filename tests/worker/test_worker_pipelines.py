"""The tiny pipeline, the real loader (local directory via from_pretrained), device selection, and
that importing broker.worker does not import torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

import numpy as np

from broker.worker.errors import ModelLoadError, WorkerDependencyError
from broker.worker.pipelines import limits_for, load_pipelines
from broker.worker.pipelines.base import select_device
from broker.worker.pipelines.tiny import TINY_LIMITS, build_tiny_tokenizer

pytestmark = [pytest.mark.worker, pytest.mark.timeout(120)]


def _generate(pipes, seed, **extra):
    import torch

    return pipes.text_to_image(
        prompt="a small red house",
        height=32,
        width=32,
        num_inference_steps=2,
        guidance_scale=0.0,
        generator=torch.Generator("cpu").manual_seed(seed),
        max_sequence_length=pipes.limits.max_sequence_length,
        **extra,
    ).images


@pytest.fixture(scope="module")
def tiny():
    return load_pipelines("tiny", "cpu")


def test_tiny_pipeline_is_deterministic(tiny):
    again = load_pipelines("tiny", "cpu")  # same weights from the fixed seed
    a = np.asarray(_generate(tiny, 5)[0])
    b = np.asarray(_generate(again, 5)[0])
    c = np.asarray(_generate(tiny, 6)[0])
    assert a.shape == (32, 32, 3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert tiny.device == "cpu" and tiny.limits == TINY_LIMITS


def test_tiny_tokenizer_chat_template():
    tokenizer = build_tiny_tokenizer()
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "héllo"}], tokenize=False, add_generation_prompt=True
    )
    assert text == "<|im_start|>user\nhéllo<|im_end|>\n<|im_start|>assistant\n"
    ids = tokenizer(text).input_ids
    assert ids[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert tokenizer.decode(ids) == text  # byte-level round trip


def test_edit_pipelines_share_components(tiny):
    assert tiny.image_to_image.transformer is tiny.text_to_image.transformer
    assert tiny.inpaint.vae is tiny.text_to_image.vae


def test_local_directory_loads_through_from_pretrained(tiny, tmp_path):
    tiny.text_to_image.save_pretrained(tmp_path / "zimage-tiny")
    loaded = load_pipelines(str(tmp_path / "zimage-tiny"), "cpu")
    assert loaded.limits.size_multiple == 16  # read from vae/config.json (4 blocks)
    assert loaded.limits.default_steps == 50  # not a Turbo model
    assert loaded.limits.default_edit_guidance == 1.5
    assert np.array_equal(np.asarray(_generate(tiny, 9)[0]), np.asarray(_generate(loaded, 9)[0]))


def test_limits_for_hub_ids():
    turbo = limits_for("Tongyi-MAI/Z-Image-Turbo")
    assert (turbo.default_steps, turbo.default_guidance) == (8, 0.0)
    assert turbo.size_multiple == 16 and turbo.default_size == (1024, 1024)
    assert turbo.default_edit_guidance == 0.0  # guidance-distilled
    assert limits_for("tiny") is TINY_LIMITS
    assert TINY_LIMITS == turbo  # the tiny model accepts exactly what the real one does


#: Keys of the real configs that the tiny model shrinks (widths and depths); every other key must
#: equal the real model's.
_SHRUNK = {
    "transformer": {"dim", "n_layers", "n_heads", "n_kv_heads", "cap_feat_dim", "axes_dims"},
    "vae": {"block_out_channels", "norm_num_groups"},
}


@pytest.mark.parametrize("component", ["transformer", "vae"])
def test_tiny_model_is_built_like_the_real_one(tiny, reference_dir, component):
    import json

    real = json.loads((reference_dir / "z-image-turbo" / component / "config.json").read_text())
    mine = dict(getattr(tiny.text_to_image, component).config)
    for key, value in real.items():
        if key.startswith("_") or key in _SHRUNK[component]:
            continue
        assert json.loads(json.dumps(mine[key])) == value, key
    if component == "transformer":
        # same rotary split of the head dimension (32:48:48 of 128)
        head = mine["dim"] // mine["n_heads"]
        assert [d / head for d in mine["axes_dims"]] == [d / 128 for d in real["axes_dims"]]
    else:
        assert len(mine["block_out_channels"]) == len(real["block_out_channels"]) == 4
        ratios = [c / mine["block_out_channels"][0] for c in mine["block_out_channels"]]
        assert ratios == [c / real["block_out_channels"][0] for c in real["block_out_channels"]]
    scheduler = json.loads(
        (reference_dir / "z-image-turbo/scheduler/scheduler_config.json").read_text()
    )
    assert tiny.text_to_image.scheduler.config["shift"] == scheduler["shift"]


def test_tiny_model_structure():
    from broker.worker.pipelines.tiny import TINY_TRANSFORMER_CONFIG, TINY_VAE_CONFIG

    pipe = load_pipelines("tiny", "cpu").text_to_image
    assert pipe.vae_scale_factor == 8 and len(TINY_VAE_CONFIG["block_out_channels"]) == 4
    assert TINY_TRANSFORMER_CONFIG["all_patch_size"] == (2,)
    # 2048 px / 8 (VAE) / 2 (patch) = 128 positions per side; the rotary axes hold 512
    assert min(TINY_TRANSFORMER_CONFIG["axes_lens"][1:]) >= 2048 // 8 // 2
    assert pipe.vae.config.latent_channels == pipe.transformer.config.in_channels == 16


def test_missing_model_is_a_load_error(tmp_path):
    with pytest.raises(ModelLoadError, match="cannot load"):
        load_pipelines(str(tmp_path / "nothing-here"), "cpu")


def test_select_device():
    import torch

    assert select_device("cpu") == ("cpu", torch.float32)
    if torch.cuda.is_available():
        assert select_device("auto") == ("cuda", torch.bfloat16)
    else:
        assert select_device("auto") == ("cpu", torch.float32)
        with pytest.raises(WorkerDependencyError, match="CUDA"):
            select_device("cuda")


def test_importing_the_package_does_not_import_torch():
    code = (
        "import sys, broker.worker, broker.worker.app, broker.cli.worker;"
        "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)

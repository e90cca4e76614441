"""A tiny random-weight Z-Image pipeline built from configs in code, fully offline.

For tests and the devnet: it runs the real diffusers ``ZImagePipeline`` code path (tokenizer with a
chat template, Qwen3 text encoder, ZImage transformer, AutoencoderKL, flow-matching scheduler) with
the block structure of the real Z-Image-Turbo (``../shared/reference/z-image-turbo/``): transformer
patch 2, 16 latent channels, the real rotary ``axes_lens`` (1536, 512, 512) with ``axes_dims`` in
the real 2:3:3 proportion, a refiner stage, qk-norm; a VAE with four blocks (scale factor 8, 1:2:4:4
widths, two layers per block, mid-block attention, no quant convs, the real scaling/shift factors);
the real scheduler (shift 3.0). Only the widths and depths are small, so it accepts every size the
real model accepts (multiples of 16 up to 2048 per side) and a 1024x1024 image at Turbo's 8 steps
costs 7–9 CPU seconds (about 3 s on two otherwise idle cores; ``benchmarks/tiny_model.py``). The
weights are fixed by seed, so a given request seed gives the
same pixels.
"""

from __future__ import annotations

from typing import Any

from broker.worker.pipelines.base import (
    ImagePipelines,
    ModelLimits,
    require_worker_dependencies,
    select_device,
)

__all__ = [
    "TINY_CHAT_TEMPLATE",
    "TINY_LIMITS",
    "TINY_TRANSFORMER_CONFIG",
    "TINY_VAE_CONFIG",
    "build_tiny_pipelines",
    "build_tiny_tokenizer",
]

#: Limits of the tiny model = the real Z-Image-Turbo's (see ``loader.limits_for``): sides multiple
#: of 16 (VAE scale 8 × patch 2) in [16, 2048], 1024x1024 by default, 8 steps, guidance 0.0
#: (guidance-distilled like Turbo, also for edits), 512 prompt tokens.
TINY_LIMITS = ModelLimits(
    size_multiple=16,
    min_side=16,
    max_side=2048,
    default_size=(1024, 1024),
    default_steps=8,
    default_guidance=0.0,
    max_sequence_length=512,
    default_edit_guidance=0.0,
)

#: ``ZImageTransformer2DModel`` arguments: the real config with small ``dim`` / depths.
TINY_TRANSFORMER_CONFIG: dict[str, Any] = {
    "all_patch_size": (2,),
    "all_f_patch_size": (1,),
    "in_channels": 16,
    "dim": 32,
    "n_layers": 2,
    "n_refiner_layers": 2,
    "n_heads": 2,
    "n_kv_heads": 2,
    "norm_eps": 1e-5,
    "qk_norm": True,
    "cap_feat_dim": 16,
    "rope_theta": 256.0,
    "t_scale": 1000.0,
    "axes_dims": [4, 6, 6],  # head dim 16, the real 32:48:48 proportion
    "axes_lens": [1536, 512, 512],  # the real ones: 512 patches per side covers 2048 px
}

#: ``AutoencoderKL`` arguments: the real config (4 blocks → scale factor 8) with widths / 16.
TINY_VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [8, 16, 32, 32],
    "layers_per_block": 2,
    "latent_channels": 16,
    "norm_num_groups": 8,
    "mid_block_add_attention": True,
    "sample_size": 1024,
    "scaling_factor": 0.3611,
    "shift_factor": 0.1159,
    "use_quant_conv": False,
    "use_post_quant_conv": False,
}

# Qwen3-style chat template (the parts ZImagePipeline uses: user turn, generation prompt, thinking).
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n"
    "{% endif %}{% endif %}"
)
_SPECIAL_TOKENS = ["<|im_start|>", "<|im_end|>", "<think>", "</think>"]


def build_tiny_tokenizer() -> Any:
    """A byte-level BPE ``Qwen2Tokenizer`` over the 256 byte symbols (no merges) plus the Qwen chat
    special tokens, with :data:`TINY_CHAT_TEMPLATE`. Returns the tokenizer (about 261 tokens)."""
    from tokenizers import pre_tokenizers
    from transformers import Qwen2Tokenizer

    vocab = {"<|endoftext|>": 0}
    for symbol in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[symbol] = len(vocab)
    for token in _SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], additional_special_tokens=_SPECIAL_TOKENS)
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    return tokenizer


def build_tiny_pipelines(device: str = "auto", *, seed: int = 0) -> ImagePipelines:
    """Build the tiny text-to-image, image-to-image and inpaint pipelines (shared components).

    Args:
        device: ``"auto"``, ``"cpu"`` or ``"cuda"`` (see :func:`select_device`).
        seed: seed of the random weights (the global torch RNG state is left untouched).

    Returns:
        :class:`ImagePipelines` with :data:`TINY_LIMITS`.

    Raises:
        WorkerDependencyError: the ``[worker]`` extra is missing.
    """
    mods = require_worker_dependencies()
    torch, diffusers, transformers = mods["torch"], mods["diffusers"], mods["transformers"]
    device, dtype = select_device(device)

    tokenizer = build_tiny_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = diffusers.ZImageTransformer2DModel(**TINY_TRANSFORMER_CONFIG)
        # The pad tokens start as torch.empty (arbitrary memory, possibly NaN): fix them.
        with torch.no_grad():
            transformer.x_pad_token.copy_(torch.ones_like(transformer.x_pad_token))
            transformer.cap_pad_token.copy_(torch.ones_like(transformer.cap_pad_token))
        vae = diffusers.AutoencoderKL(**TINY_VAE_CONFIG)
        text_encoder = transformers.Qwen3Model(
            transformers.Qwen3Config(
                hidden_size=16,
                intermediate_size=16,
                num_hidden_layers=2,
                num_attention_heads=2,
                num_key_value_heads=2,
                head_dim=8,
                vocab_size=len(tokenizer),
                max_position_embeddings=1024,
            )
        )
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=False
    )
    # Casting freshly built modules makes diffusers warn about "modules to keep in float32" (there
    # are none in these models); keep its logger quiet while building.
    verbosity = diffusers.utils.logging.get_verbosity()
    diffusers.utils.logging.set_verbosity_error()
    try:
        text_to_image, image_to_image, inpaint = _assemble(
            diffusers, scheduler, vae, text_encoder, tokenizer, transformer, device, dtype
        )
    finally:
        diffusers.utils.logging.set_verbosity(verbosity)
    return ImagePipelines(
        name="tiny",
        text_to_image=text_to_image,
        image_to_image=image_to_image,
        inpaint=inpaint,
        device=device,
        dtype=dtype,
        limits=TINY_LIMITS,
    )


def _assemble(diffusers, scheduler, vae, text_encoder, tokenizer, transformer, device, dtype):
    text_to_image = diffusers.ZImagePipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
    ).to(device, dtype)
    text_to_image.set_progress_bar_config(disable=True)
    image_to_image = diffusers.ZImageImg2ImgPipeline.from_pipe(text_to_image)
    inpaint = diffusers.ZImageInpaintPipeline.from_pipe(text_to_image)
    for pipe in (image_to_image, inpaint):
        pipe.set_progress_bar_config(disable=True)
    return text_to_image, image_to_image, inpaint

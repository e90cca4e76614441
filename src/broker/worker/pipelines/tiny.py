"""A tiny random-weight Z-Image pipeline built from configs in code, fully offline.

For tests and the devnet demo: it exercises the real diffusers ``ZImagePipeline`` code path
(tokenizer with a chat template, Qwen3 text encoder, ZImage transformer, AutoencoderKL, flow-matching
scheduler) in about 0.1 s, and makes a 64×64 image in 2 steps in well under a second on CPU. The
weights are fixed by seed, so a given request seed gives the same pixels.
"""

from __future__ import annotations

from typing import Any

from broker.worker.pipelines.base import (
    ImagePipelines,
    ModelLimits,
    require_worker_dependencies,
    select_device,
)

__all__ = ["TINY_CHAT_TEMPLATE", "TINY_LIMITS", "build_tiny_pipelines", "build_tiny_tokenizer"]

#: Limits of the tiny model: sizes multiple of 4 (VAE scale 2 × patch 2) in [16, 128] — the
#: transformer's rotary axes hold 32 patch positions per side, so 128 px is the largest side it can
#: generate — 64×64 by default, 2 steps, guidance 0.0 (like Turbo), 128 prompt tokens.
TINY_LIMITS = ModelLimits(
    size_multiple=4,
    min_side=16,
    max_side=128,
    default_size=(64, 64),
    default_steps=2,
    default_guidance=0.0,
    max_sequence_length=128,
)

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
        transformer = diffusers.ZImageTransformer2DModel(
            all_patch_size=(2,),
            all_f_patch_size=(1,),
            in_channels=16,
            dim=32,
            n_layers=2,
            n_refiner_layers=1,
            n_heads=2,
            n_kv_heads=2,
            norm_eps=1e-5,
            qk_norm=True,
            cap_feat_dim=16,
            rope_theta=256.0,
            t_scale=1000.0,
            axes_dims=[8, 4, 4],
            axes_lens=[256, 32, 32],
        )
        # The pad tokens start as torch.empty (arbitrary memory, possibly NaN): fix them.
        with torch.no_grad():
            transformer.x_pad_token.copy_(torch.ones_like(transformer.x_pad_token))
            transformer.cap_pad_token.copy_(torch.ones_like(transformer.cap_pad_token))
        vae = diffusers.AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
            up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
            block_out_channels=[32, 64],
            layers_per_block=1,
            latent_channels=16,
            norm_num_groups=32,
            sample_size=32,
            scaling_factor=0.3611,
            shift_factor=0.1159,
        )
        text_encoder = transformers.Qwen3Model(
            transformers.Qwen3Config(
                hidden_size=16,
                intermediate_size=16,
                num_hidden_layers=2,
                num_attention_heads=2,
                num_key_value_heads=2,
                head_dim=8,
                vocab_size=len(tokenizer),
                max_position_embeddings=512,
            )
        )
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler()
    # Casting freshly built modules makes diffusers warn about "modules to keep in float32" (there are
    # none in these models); keep its logger quiet while building.
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

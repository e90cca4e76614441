"""Seconds per image of the Z-Image worker's text-to-image path, and the share of the device's peak
it reaches.

    .venv/bin/python benchmarks/worker_latency.py                    # CUDA: full model; CPU: tiny
    .venv/bin/python benchmarks/worker_latency.py --attention _native_flash --compile
    .venv/bin/python benchmarks/worker_latency.py --compile --cuda-graphs --batches 1,4
    .venv/bin/python benchmarks/worker_latency.py --model full --layers 1 --size 128 --steps 1 \
        --batches 1 --repeat 1 --bf16-on-cpu                       # CPU smoke of the full build

``--model full`` builds the real Z-Image-Turbo architecture from the configs in
``../shared/reference/z-image-turbo/`` (transformer 30+2+2 layers at dim 3840, Qwen3 text encoder 36
layers at 2560, the 4-block VAE, the flow-matching scheduler) with **random weights** (the weights
cannot be downloaded here; the compute is the same), in bf16 on CUDA (float32 on CPU). The modules
are created on the meta device and materialised on the target device, so nothing of the 10 B
parameters is ever built on the CPU. ``--model tiny`` is the worker's tiny model
(:func:`broker.worker.pipelines.tiny.build_tiny_pipelines`), which is what runs on CPU (CI). The
tokenizer is the tiny byte-level one in both cases: the text encoder's compute is unchanged (the
prompt is padded to 512 tokens either way), but the caption the transformer sees is 99 tokens
(padded to 128) where the real tokenizer gives about 30 (padded to 32), so the transformer does
about 2-5 % more work than with the real tokenizer.

Each batch size ``n`` (the worker's ``n``) is run ``--repeat`` times after one warm-up (compilation
happens there), as the worker's engine runs it: image ``i`` seeded ``1 + i``, one pipeline call
with ``num_images_per_prompt = n`` or, with ``--no-batch-n``, one call per image; seconds per
image = best wall time / ``n``. The FLOPs of one generation are counted with
``torch.utils.flop_counter.FlopCounterMode`` on the eager model with native attention, before the
speed settings are applied (:func:`counted_flops` says why), and computed independently from the
architecture (:func:`analytic_flops`); both are printed per part (transformer, text encoder, VAE
decode) and must agree. Share of peak = counted FLOPs / seconds / peak (bf16 dense tensor-core peak
of known GPUs, or ``--peak-tflops``).

The speed settings are the worker's own (``ZG_WORKER_ATTENTION_BACKEND``, ``_COMPILE``,
``_COMPILE_MODE``, ``_CUDA_GRAPHS``, ``_BATCH_N``), applied by the same
:func:`broker.worker.pipelines.performance.apply_performance`: ``--attention``, ``--compile``,
``--compile-mode``, ``--cuda-graphs`` (implies ``--compile``), ``--no-batch-n``. Each is switched
off where unsupported (not CUDA, kernel package missing) and the output says which and why. Prints a
table and writes ``benchmarks/results/worker_latency.json`` (settings asked, settings in effect,
per-``n`` rows).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

__all__ = ["main"]

HERE = Path(__file__).resolve().parent
#: ``../shared/reference/z-image-turbo`` next to the checkout (a worktree's checkout may sit one
#: level deeper), or ``$ZG_REFERENCE_DIR/z-image-turbo``.
REFERENCE = next(
    (
        p
        for p in (
            [Path(os.environ["ZG_REFERENCE_DIR"]) / "z-image-turbo"]
            if os.environ.get("ZG_REFERENCE_DIR")
            else []
        )
        + [
            up / "shared" / "reference" / "z-image-turbo"
            for up in (HERE.parent.parent, HERE.parent.parent.parent)
        ]
        if p.is_dir()
    ),
    HERE.parent.parent / "shared" / "reference" / "z-image-turbo",
)
PROMPT = "A serene mountain landscape at sunset, a lake reflecting the sky, photorealistic"

#: bf16 dense tensor-core peak, TFLOP/s, by a substring of ``torch.cuda.get_device_name()``.
PEAK_BF16_TFLOPS = {
    "H200": 989.0,
    "H100": 989.0,
    "H800": 989.0,
    "GH200": 989.0,
    "B200": 2250.0,
    "A100": 312.0,
    "A800": 312.0,
    "L40S": 362.0,
    "L40": 181.0,
    "L4": 121.0,
    "A10G": 70.0,
    "A10": 125.0,
    "RTX 4090": 165.0,
    "RTX 3090": 71.0,
}


def _config(part: str) -> dict[str, Any]:
    path = REFERENCE / part / ("scheduler_config.json" if part == "scheduler" else "config.json")
    if not path.is_file():
        raise SystemExit(
            f"{path} not found: the full model's configs live in ../shared/reference/z-image-turbo/"
        )
    return json.loads(path.read_text())


def _materialise(module: Any, device: str, dtype: Any, torch: Any, seed: int) -> Any:
    """Meta-device module → random weights on ``device`` (normal(0, 0.02) matrices, unit norms,
    zero biases), then ``dtype``."""
    module = module.to_empty(device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            elif p.ndim == 1 or "norm" in name:
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02, generator=gen)
        for _name, b in module.named_buffers():
            if b.is_floating_point() and not torch.isfinite(b).all():
                b.zero_()
    return module.to(dtype)


def build_full_pipeline(device: str, dtype: Any, *, layers: int | None = None, seed: int = 0):
    """The real Z-Image-Turbo architecture with random weights (module docstring).

    Args:
        device: ``"cuda"``, ``"cpu"`` or ``"meta"`` (modules without weights, for the analytic
            FLOP count). dtype: torch dtype (bf16 on CUDA).
        layers: override the transformer's ``n_layers`` and the text encoder's depth (smoke runs).

    Returns:
        A ``diffusers.ZImagePipeline``.
    """
    import diffusers
    import torch
    import transformers

    from broker.worker.pipelines.tiny import build_tiny_tokenizer

    tcfg = {k: v for k, v in _config("transformer").items() if not k.startswith("_")}
    vcfg = {k: v for k, v in _config("vae").items() if not k.startswith("_")}
    ecfg = {
        k: v
        for k, v in _config("text_encoder").items()
        if not k.startswith("_") and k not in ("architectures", "model_type", "torch_dtype")
    }
    scfg = {k: v for k, v in _config("scheduler").items() if not k.startswith("_")}
    if layers is not None:
        tcfg["n_layers"] = layers
        ecfg["num_hidden_layers"] = layers
    tokenizer = build_tiny_tokenizer()
    with torch.device("meta"):
        transformer = diffusers.ZImageTransformer2DModel(**tcfg)
        text_encoder = transformers.Qwen3Model(transformers.Qwen3Config(**ecfg))
        vae = diffusers.AutoencoderKL(**vcfg)
    if device != "meta":  # meta: shapes only (--flops-only)
        transformer = _materialise(transformer, device, dtype, torch, seed)
        text_encoder = _materialise(text_encoder, device, dtype, torch, seed + 1)
        vae = _materialise(vae, device, dtype, torch, seed + 2)
    # rotary tables and other non-persistent buffers are recomputed by the modules on first use
    # where they are derived; Qwen3's rotary inv_freq is rebuilt here from its config
    rotary = getattr(text_encoder, "rotary_emb", None)
    if rotary is not None and hasattr(rotary, "rope_init_fn") and device != "meta":
        inv_freq, scaling = rotary.rope_init_fn(rotary.config, device)
        rotary.inv_freq = inv_freq
        rotary.original_inv_freq = inv_freq
        rotary.attention_scaling = scaling
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(**scfg)
    pipe = diffusers.ZImagePipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _ceil(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def prompt_tokens(pipe: Any, prompt: str, max_sequence_length: int = 512) -> int:
    """Tokens of ``prompt`` after the pipeline's chat template (what the transformer receives)."""
    text = pipe.tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}],
        tokenize=False,
        add_generation_prompt=True,
        enable_thinking=True,
    )
    return min(len(pipe.tokenizer(text).input_ids), max_sequence_length)


def _linear_params(module: Any, skip: str = "adaLN") -> int:
    """Weights of the ``nn.Linear`` layers of ``module`` (those under ``skip`` left out)."""
    import torch

    return sum(
        m.weight.numel()
        for name, m in module.named_modules()
        if isinstance(m, torch.nn.Linear) and skip not in name
    )


def analytic_flops(
    pipe: Any, size: int, steps: int, n: int, *, guidance: float = 0.0, prompt: str = PROMPT
) -> dict[str, float]:
    """FLOPs of one generation from the architecture (2 per multiply-add), independently of
    ``FlopCounterMode``: transformer = steps x CFG passes x n x (2 x block weights x tokens of each
    stage + 4 x dim x tokens^2 per attention + patch embed + final layer (on the whole sequence) +
    caption embed + timestep embedder and adaLN modulations once per image); text encoder =
    prompts x (2 x layer weights x 512 padded tokens + 4 x 512^2 x attention width per layer);
    VAE decode = n x sum over the decoder's convolutions of 2 x weights x output pixels,
    plus the mid-block attention. Norms, activations and the scheduler are not counted (by either).

    Returns:
        ``{"transformer", "text_encoder", "vae_decode", "total"}`` in FLOP.
    """
    import torch

    tr, te, vae = pipe.transformer, pipe.text_encoder, pipe.vae
    cfg = tr.config
    dim, passes = cfg.dim, 2 if guidance > 0 else 1
    patch = cfg.all_patch_size[0]
    side = size // (2 ** (len(vae.config.block_out_channels) - 1))  # latent side
    img = _ceil((side // patch) ** 2, 32)
    cap = _ceil(prompt_tokens(pipe, prompt), 32)
    main = tr.layers[0]
    block = _linear_params(main)
    refiner = _linear_params(tr.noise_refiner[0]) if cfg.n_refiner_layers else 0
    context = _linear_params(tr.context_refiner[0]) if cfg.n_refiner_layers else 0
    seq = img + cap
    per_image = sum(
        m.weight.numel()
        for name, m in tr.named_modules()
        if isinstance(m, torch.nn.Linear) and ("adaLN" in name or name.startswith("t_embedder"))
    )
    per_pass = (
        2 * block * cfg.n_layers * seq
        + 4 * dim * cfg.n_layers * seq**2
        + cfg.n_refiner_layers * (2 * refiner * img + 4 * dim * img**2)
        + cfg.n_refiner_layers * (2 * context * cap + 4 * dim * cap**2)
        + 2 * img * (patch * patch * cfg.in_channels) * dim  # patch embed
        + 2 * seq * dim * (patch * patch * cfg.in_channels)  # final layer (whole sequence)
        + 2 * cap * cfg.cap_feat_dim * dim
        + 2 * per_image  # timestep embedder and adaLN modulations: once per image and pass
    )
    transformer = per_pass * steps * passes * n

    ec = te.config
    tokens = 512
    width = ec.num_attention_heads * ec.head_dim
    layer = _linear_params(te.layers[0])
    text = passes * ec.num_hidden_layers * (2 * layer * tokens + 4 * tokens**2 * width)

    vc = vae.config
    chans = list(reversed(vc.block_out_channels))

    def conv(cin: int, cout: int, k: int, px: int) -> int:
        return 2 * cin * cout * k * k * px * px

    decode = conv(vc.latent_channels, chans[0], 3, side)
    decode += 2 * 2 * conv(chans[0], chans[0], 3, side)  # mid block: two resnets
    if vc.mid_block_add_attention:
        decode += 4 * 2 * chans[0] ** 2 * side**2 + 4 * side**4 * chans[0]
    px, prev = side, chans[0]
    for i, ch in enumerate(chans):
        for j in range(vc.layers_per_block + 1):
            cin = prev if j == 0 else ch
            decode += conv(cin, ch, 3, px) + conv(ch, ch, 3, px)
            decode += conv(cin, ch, 1, px) if cin != ch else 0
            prev = ch
        if i < len(chans) - 1:
            px *= 2
            decode += conv(ch, ch, 3, px)
    decode += conv(chans[-1], vc.out_channels, 3, px)
    decode *= n
    return {
        "transformer": float(transformer),
        "text_encoder": float(text),
        "vae_decode": float(decode),
        "total": float(transformer + text + decode),
    }


def _sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def counted_flops(run: Any) -> dict[str, float]:
    """FLOPs of ``run()`` counted by ``torch.utils.flop_counter.FlopCounterMode``.

    ``FlopCounterMode`` knows the CUDA SDPA kernels but not ``aten.scaled_dot_product_attention``
    as dispatched on CPU (nor ``_scaled_dot_product_flash_attention_for_cpu``): without the extra
    mapping given here every attention product is missing on CPU. Kernels outside aten
    (flash-attn, compiled Triton code) are not seen at all, so the count is taken on the eager
    model with native attention, before any speed setting is applied.

    Returns:
        ``{"transformer", "text_encoder", "vae_decode", "total"}`` in FLOP (the parts by the
        module that ran them).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    aten = torch.ops.aten
    counter = FlopCounterMode(
        display=False,
        custom_mapping={
            aten.scaled_dot_product_attention: _sdpa_flops,
            aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_flops,
        },
    )
    with counter:
        run()
    per_module = counter.get_flop_counts()

    def part(name: str) -> float:
        return float(sum(per_module.get(name, {}).values()))

    return {
        "transformer": part("ZImageTransformer2DModel"),
        "text_encoder": part("Qwen3Model"),
        "vae_decode": part("Decoder"),
        "total": float(counter.get_total_flops()),
    }


def _peak_tflops(torch: Any, device: str, override: float | None) -> float | None:
    if override:
        return override
    if device != "cuda":
        return None
    name = torch.cuda.get_device_name()
    for key, value in sorted(PEAK_BF16_TFLOPS.items(), key=lambda kv: -len(kv[0])):
        if key in name:
            return value
    return None


def _parse_args() -> argparse.Namespace:
    from broker.worker.pipelines.performance import ATTENTION_BACKENDS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--model",
        default="auto",
        choices=["auto", "full", "tiny"],
        help="auto: full on CUDA, tiny on CPU",
    )
    parser.add_argument("--size", type=int, help="square side (default 1024 on CUDA, 256 on CPU)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--guidance", type=float, default=0.0, help="> 0: two passes per step")
    parser.add_argument("--batches", default="1,4", help="images per request (n)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--layers", type=int, help="(full) override the depths, for smoke runs")
    parser.add_argument(
        "--attention",
        default="auto",
        choices=ATTENTION_BACKENDS,
        help="ZG_WORKER_ATTENTION_BACKEND (auto = native SDPA)",
    )
    parser.add_argument("--compile", action="store_true", help="ZG_WORKER_COMPILE")
    parser.add_argument("--compile-mode", default="default", choices=["default", "max-autotune"])
    parser.add_argument(
        "--cuda-graphs", action="store_true", help="ZG_WORKER_CUDA_GRAPHS (implies --compile)"
    )
    parser.add_argument(
        "--no-batch-n",
        dest="batch_n",
        action="store_false",
        help="ZG_WORKER_BATCH_N=false: one pipeline call per image",
    )
    parser.add_argument(
        "--flops-only",
        action="store_true",
        help="no run: build the full model on the meta device (no weights, any machine) and print "
        "the analytic FLOPs per image and the time they take at --peak-tflops (default H200)",
    )
    parser.add_argument("--peak-tflops", type=float, help="device peak for the share figure")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument(
        "--bf16-on-cpu",
        action="store_true",
        help="bf16 on CPU too (smoke runs of the full model in less memory)",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "worker_latency.json")
    return parser.parse_args()


def flops_only(args: argparse.Namespace) -> None:
    """``--flops-only``: the analytic FLOPs of the full model (built on the meta device, so no
    memory and no GPU) at ``--size`` (default 1024) and ``--steps`` for each ``n``, and the floor
    time at ``--peak-tflops`` (default the H200's 989). Prints them and writes ``--out``."""
    import torch

    size = args.size or 1024
    peak = args.peak_tflops or PEAK_BF16_TFLOPS["H200"]
    pipe = build_full_pipeline("meta", torch.bfloat16, layers=args.layers)
    rows = []
    for n in (int(x) for x in args.batches.split(",")):
        flops = analytic_flops(pipe, size, args.steps, n, guidance=args.guidance)
        per_image = flops["total"] / n
        rows.append(
            {
                "n": n,
                "analytic_tflop": {k: round(v / 1e12, 3) for k, v in flops.items()},
                "tflop_per_image": round(per_image / 1e12, 2),
                "floor_seconds_per_image": round(per_image / (peak * 1e12), 3),
            }
        )
        print(
            f"full model {size}x{size}, {args.steps} steps, n={n}: "
            f"{per_image / 1e12:.1f} TFLOP per image {rows[-1]['analytic_tflop']}; "
            f"at {peak:g} TFLOP/s: {rows[-1]['floor_seconds_per_image']:.3f} s per image"
        )
    params = {
        name: sum(p.numel() for p in getattr(pipe, name).parameters())
        for name in ("transformer", "text_encoder", "vae")
    }
    print("parameters:", {k: f"{v / 1e9:.2f} B" for k, v in params.items()})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "model": "full",
                "flops_only": True,
                "size": size,
                "steps": args.steps,
                "guidance": args.guidance,
                "layers": args.layers,
                "caption_tokens": prompt_tokens(pipe, PROMPT),
                "parameters": params,
                "peak_tflops": peak,
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}")


def main() -> None:
    """Run the benchmark (module docstring); prints a table and writes the JSON file."""
    args = _parse_args()
    if args.flops_only:
        flops_only(args)
        return

    import torch

    from broker.worker.pipelines.base import select_device
    from broker.worker.pipelines.performance import PerformanceOptions, apply_performance

    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = select_device(args.device)
    if args.bf16_on_cpu:
        dtype = torch.bfloat16
    model = args.model if args.model != "auto" else ("full" if device == "cuda" else "tiny")
    size = args.size or (1024 if device == "cuda" else 256)
    batches = [int(x) for x in args.batches.split(",")]
    options = PerformanceOptions(
        attention_backend=args.attention,
        compile=args.compile or args.cuda_graphs,
        compile_mode=args.compile_mode,
        cuda_graphs=args.cuda_graphs,
        batch_n=args.batch_n,
    )
    started = time.perf_counter()
    if model == "full":
        pipe = build_full_pipeline(device, dtype, layers=args.layers)
    else:
        from broker.worker.pipelines.tiny import build_tiny_pipelines

        pipe = build_tiny_pipelines(device).text_to_image.to(dtype=dtype)
    build_s = time.perf_counter() - started

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    def call(n: int, seeds: list[int]) -> Any:
        gens = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]
        with torch.inference_mode():
            return pipe(
                prompt=PROMPT,
                height=size,
                width=size,
                num_inference_steps=args.steps,
                guidance_scale=args.guidance,
                num_images_per_prompt=n,
                generator=gens,
                output_type="pt",
            ).images

    def generate(n: int, batch_n: bool) -> Any:
        """As the worker's engine: image i seeded 1 + i, one call or one call per image."""
        if batch_n:
            return call(n, [1 + i for i in range(n)])
        return torch.cat([call(1, [1 + i]) for i in range(n)])

    # FLOPs on the eager model with native attention, before the speed settings (counted_flops)
    flops = {n: counted_flops(lambda n=n: generate(n, True)) for n in batches}
    analytic = {
        n: analytic_flops(pipe, size, args.steps, n, guidance=args.guidance) for n in batches
    }
    report = apply_performance(pipe.transformer, [pipe], device, options)

    peak = _peak_tflops(torch, device, args.peak_tflops)
    rows = []
    for n in batches:
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        images = generate(n, report.batch_n)  # warm-up (and compilation)
        sync()
        warm_s = time.perf_counter() - t0
        assert tuple(images.shape) == (n, 3, size, size), images.shape
        best = cpu_best = float("inf")
        for _ in range(args.repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            generate(n, report.batch_n)
            sync()
            best = min(best, time.perf_counter() - t0)
            cpu_best = min(cpu_best, time.process_time() - c0)
        total = flops[n]["total"]
        row = {
            "n": n,
            "seconds": round(best, 3),
            "seconds_per_image": round(best / n, 3),
            "cpu_seconds": round(cpu_best, 3),  # process CPU time (the stable figure on CPU)
            "warmup_s": round(warm_s, 2),
            "gflop_per_image": round(total / n / 1e9, 2),
            "analytic_gflop_per_image": round(analytic[n]["total"] / n / 1e9, 2),
            "counted_gflop": {k: round(v / 1e9, 5) for k, v in flops[n].items()},
            "analytic_gflop": {k: round(v / 1e9, 5) for k, v in analytic[n].items()},
            "achieved_tflops": round(total / best / 1e12, 4),
        }
        if peak:
            row["share_of_peak"] = round(total / best / 1e12 / peak, 4)
        if device == "cuda":
            row["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
        rows.append(row)

    name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu"
    settings = {
        "attention_backend": options.attention_backend,
        "compile": options.compile,
        "compile_mode": options.compile_mode,
        "cuda_graphs": options.cuda_graphs,
        "batch_n": options.batch_n,
    }
    print(
        f"{model} model on {device} ({name}), {size}x{size}, {args.steps} steps, guidance "
        f"{args.guidance}, {dtype}; built in {build_s:.1f} s"
    )
    print(f"asked: {settings}")
    print(f"in effect: {report.as_dict()}")
    print(
        f"{'n':>3} {'s/request':>10} {'s/image':>8} {'cpu s':>7} {'GFLOP/img':>10} "
        f"{'analytic':>9} {'TFLOP/s':>8} {'of peak':>8}"
    )
    for r in rows:
        share = f"{r['share_of_peak']:.1%}" if "share_of_peak" in r else "-"
        print(
            f"{r['n']:>3} {r['seconds']:>10.3f} {r['seconds_per_image']:>8.3f} "
            f"{r['cpu_seconds']:>7.2f} {r['gflop_per_image']:>10.2f} "
            f"{r['analytic_gflop_per_image']:>9.2f} "
            f"{r['achieved_tflops']:>8.4f} {share:>8}"
        )
    for r in rows:
        print(f"n={r['n']} GFLOP counted {r['counted_gflop']} analytic {r['analytic_gflop']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "model": model,
                "device": device,
                "device_name": name,
                "dtype": str(dtype),
                "size": size,
                "steps": args.steps,
                "guidance": args.guidance,
                "layers": args.layers,
                "caption_tokens": prompt_tokens(pipe, PROMPT),
                "settings": settings,
                "in_effect": report.as_dict(),
                "peak_tflops": peak,
                "build_s": round(build_s, 1),
                "rows": rows,
                "cpus": os.cpu_count(),
                "torch": torch.__version__,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Seconds per image of the Z-Image worker's text-to-image path, and the share of the device's peak
it reaches.

    .venv/bin/python benchmarks/worker_latency.py                    # CUDA: full model; CPU: tiny
    .venv/bin/python benchmarks/worker_latency.py --attention _native_flash --compile
    .venv/bin/python benchmarks/worker_latency.py --compile --cuda-graphs --batches 1,4
    .venv/bin/python benchmarks/worker_latency.py --model full --layers 1 --size 128 --steps 1
                                                                     # CPU smoke of the full build

``--model full`` builds the real Z-Image-Turbo architecture from the configs in
``../shared/reference/z-image-turbo/`` (transformer 30+2 layers at dim 3840, Qwen3 text encoder 36
layers at 2560, the 4-block VAE, the flow-matching scheduler) with **random weights** (the weights
cannot be downloaded here; the compute is the same), in bf16 on CUDA (float32 on CPU). The modules
are created on the meta device and materialised on the target device, so nothing of the 10 B
parameters is ever built on the CPU. ``--model tiny`` is the worker's tiny model
(:func:`broker.worker.pipelines.tiny.build_tiny_pipelines`), which is what runs on CPU (CI). The
tokenizer is the tiny one in both cases (token ids stay inside the real vocabulary; the prompt is
padded to the same length as with the real tokenizer, so the encoder's compute is unchanged).

Each batch size ``n`` (``num_images_per_prompt``, the worker's ``n``) is run ``--repeat`` times
after one warm-up (compilation happens there); seconds per image = best wall time / ``n``. The FLOPs
of one whole generation are counted once with ``torch.utils.flop_counter.FlopCounterMode``; the
share of peak = FLOPs / seconds / peak (bf16 dense tensor-core peak of known GPUs, or
``--peak-tflops``).

Optimisations, each behind a flag and off where unsupported (the reason is printed):
``--attention`` (a diffusers attention backend: ``native`` SDPA, ``_native_flash``, ``flash``,
``_native_cudnn`` ...; CUDA only except ``native``), ``--compile`` (``torch.compile`` of the
transformer; CUDA only unless ``--compile-on-cpu``), ``--cuda-graphs`` (compile mode
``reduce-overhead``, which captures CUDA graphs; CUDA only), ``--batches``. Writes
``benchmarks/results/worker_latency.json``.
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
        device: ``"cuda"`` or ``"cpu"``. dtype: torch dtype (bf16 on CUDA).
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
    transformer = _materialise(transformer, device, dtype, torch, seed)
    text_encoder = _materialise(text_encoder, device, dtype, torch, seed + 1)
    vae = _materialise(vae, device, dtype, torch, seed + 2)
    # rotary tables and other non-persistent buffers are recomputed by the modules on first use
    # where they are derived; Qwen3's rotary inv_freq is rebuilt here from its config
    rotary = getattr(text_encoder, "rotary_emb", None)
    if rotary is not None and hasattr(rotary, "rope_init_fn"):
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


def main() -> None:
    """Run the benchmark (module docstring); prints a table and writes the JSON file."""
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
    parser.add_argument("--batches", default="1,4", help="images per request (n)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--layers", type=int, help="(full) override the depths, for smoke runs")
    parser.add_argument(
        "--attention",
        default="native",
        help="diffusers attention backend of the transformer (native = SDPA)",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the transformer")
    parser.add_argument("--compile-on-cpu", action="store_true")
    parser.add_argument(
        "--cuda-graphs", action="store_true", help="compile mode reduce-overhead (CUDA graphs)"
    )
    parser.add_argument("--peak-tflops", type=float, help="device peak for the share figure")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument(
        "--bf16-on-cpu",
        action="store_true",
        help="bf16 on CPU too (smoke runs of the full model in less memory)",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "worker_latency.json")
    args = parser.parse_args()

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from broker.worker.pipelines.base import select_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = select_device(args.device)
    if args.bf16_on_cpu:
        dtype = torch.bfloat16
    model = args.model if args.model != "auto" else ("full" if device == "cuda" else "tiny")
    size = args.size or (1024 if device == "cuda" else 256)
    notes: list[str] = []
    started = time.perf_counter()
    if model == "full":
        pipe = build_full_pipeline(device, dtype, layers=args.layers)
    else:
        from broker.worker.pipelines.tiny import build_tiny_pipelines

        pipe = build_tiny_pipelines(device).text_to_image.to(dtype=dtype)
    build_s = time.perf_counter() - started

    attention = args.attention
    if attention != "native" and device != "cuda":
        notes.append(f"attention {attention!r} needs CUDA: native SDPA used")
        attention = "native"
    if attention != "native":
        try:
            pipe.transformer.set_attention_backend(attention)
        except Exception as exc:  # noqa: BLE001 - unsupported backend / missing kernel package
            notes.append(f"attention {attention!r} unavailable ({exc}); native SDPA used")
            attention = "native"
    compiled = None
    if args.compile or args.cuda_graphs:
        if device != "cuda" and not args.compile_on_cpu:
            notes.append("torch.compile off on CPU (pass --compile-on-cpu to force)")
        elif args.cuda_graphs and device != "cuda":
            notes.append("CUDA graphs need CUDA: off")
        else:
            mode = "reduce-overhead" if args.cuda_graphs else "max-autotune-no-cudagraphs"
            pipe.transformer.compile(mode=mode, fullgraph=False, dynamic=False)
            compiled = mode

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    def generate(n: int) -> Any:
        gen = torch.Generator(device=device).manual_seed(1)
        with torch.inference_mode():
            return pipe(
                prompt=PROMPT,
                height=size,
                width=size,
                num_inference_steps=args.steps,
                guidance_scale=0.0,
                num_images_per_prompt=n,
                generator=gen,
                output_type="pt",
            ).images

    peak = _peak_tflops(torch, device, args.peak_tflops)
    rows = []
    for n in (int(x) for x in args.batches.split(",")):
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        generate(n)  # warm-up (and compilation)
        sync()
        warm_s = time.perf_counter() - t0
        counter = FlopCounterMode(display=False)
        with counter:
            images = generate(n)
        sync()
        flops = counter.get_total_flops()
        assert tuple(images.shape[-2:]) == (size, size), images.shape
        best = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            generate(n)
            sync()
            best = min(best, time.perf_counter() - t0)
        row = {
            "n": n,
            "seconds": round(best, 3),
            "seconds_per_image": round(best / n, 3),
            "warmup_s": round(warm_s, 2),
            "gflop_per_image": round(flops / n / 1e9, 1),
            "achieved_tflops": round(flops / best / 1e12, 3),
        }
        if peak:
            row["share_of_peak"] = round(flops / best / 1e12 / peak, 3)
        if device == "cuda":
            row["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
        rows.append(row)

    name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu"
    print(
        f"{model} model on {device} ({name}), {size}x{size}, {args.steps} steps, {dtype}, "
        f"attention {attention}, compile {compiled or 'off'}; built in {build_s:.1f} s"
    )
    print(
        f"{'n':>3} {'s/request':>10} {'s/image':>8} {'GFLOP/img':>10} {'TFLOP/s':>8} {'of peak':>8}"
    )
    for r in rows:
        share = f"{r['share_of_peak']:.1%}" if "share_of_peak" in r else "-"
        print(
            f"{r['n']:>3} {r['seconds']:>10.3f} {r['seconds_per_image']:>8.3f} "
            f"{r['gflop_per_image']:>10.1f} {r['achieved_tflops']:>8.3f} {share:>8}"
        )
    for note in notes:
        print("note:", note)
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
                "attention": attention,
                "compile": compiled,
                "peak_tflops": peak,
                "build_s": round(build_s, 1),
                "rows": rows,
                "notes": notes,
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

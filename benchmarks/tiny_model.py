"""What the tiny Z-Image model costs on CPU: seconds per image at the seeds' sizes and peak RSS.

Usage::

    .venv/bin/python benchmarks/tiny_model.py                   # 512x512 and 1024x1024, 2 threads
    .venv/bin/python benchmarks/tiny_model.py --sizes 512,1024,2048 --threads 2 --repeat 3

Builds the tiny pipeline (``broker.worker.pipelines.tiny``), warms it up once at 64x64, then times
text-to-image at each size with the model's default steps (8, as Z-Image-Turbo), through the same
``ImageEngine`` the worker uses. Prints wall and CPU seconds (best of ``--repeat``; the CPU figure
is what matters on a shared machine) and the process's peak RSS, and writes
``benchmarks/results/tiny_model.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

__all__ = ["main"]


def main() -> None:
    """Run the benchmark (see the module docstring); prints a table and writes the JSON file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="512,1024", help="square sides in pixels, comma-separated"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--repeat", type=int, default=2, help="runs per size (best is kept)")
    args = parser.parse_args()

    import torch

    from broker.worker.engine import ImageEngine, ImageTask

    torch.set_num_threads(args.threads)
    engine = ImageEngine("tiny", "cpu", queue_size=0)
    limits = engine.limits
    started = time.perf_counter()
    engine.load()
    load_seconds = time.perf_counter() - started

    def run(side: int) -> tuple[float, float]:
        task = ImageTask(
            prompt="A serene mountain landscape at sunset",
            n=1,
            width=side,
            height=side,
            num_inference_steps=limits.default_steps,
            guidance_scale=limits.default_guidance,
            seed=1,
        )
        wall, cpu = time.perf_counter(), time.process_time()
        images = engine.submit(task).result().images
        assert images[0].size == (side, side)
        return time.perf_counter() - wall, time.process_time() - cpu

    run(64)
    rows = []
    for side in (int(s) for s in args.sizes.split(",")):
        runs = [run(side) for _ in range(args.repeat)]
        wall, cpu = min(r[0] for r in runs), min(r[1] for r in runs)
        rows.append(
            {
                "size": f"{side}x{side}",
                "steps": limits.default_steps,
                "wall_s": round(wall, 2),
                "cpu_s": round(cpu, 2),
            }
        )
    engine.shutdown()
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"tiny model: load {load_seconds:.2f} s, {args.threads} threads")
    print(f"{'size':>10} {'steps':>5} {'wall s':>7} {'cpu s':>7}")
    for row in rows:
        print(f"{row['size']:>10} {row['steps']:>5} {row['wall_s']:>7} {row['cpu_s']:>7}")
    print(f"peak RSS {peak_mib:.0f} MiB")
    out = Path(__file__).resolve().parent / "results" / "tiny_model.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "threads": args.threads,
                "load_s": round(load_seconds, 2),
                "rows": rows,
                "peak_rss_mib": round(peak_mib),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

"""Settings of the Z-Image worker (``0g-broker worker serve``), environment prefix
``ZG_WORKER_``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from broker.asgi.settings import AllowedHosts, AllowedOrigins
from broker.worker.pipelines.performance import AttentionBackend, CompileMode, PerformanceOptions

__all__ = ["DEFAULT_MODEL", "WorkerSettings"]

DEFAULT_MODEL = "Tongyi-MAI/Z-Image-Turbo"


class WorkerSettings(BaseSettings):
    """Worker configuration. Environment variables: ``ZG_WORKER_MODEL``, ``ZG_WORKER_PORT``...

    Times are in seconds. ``idle_unload_seconds = 0`` disables the idle unload timer.
    """

    model_config = SettingsConfigDict(env_prefix="ZG_WORKER_", extra="ignore")

    model: str = Field(
        DEFAULT_MODEL,
        description="'tiny' (random-weight test pipeline), a Hugging Face Hub id or a local "
        "directory.",
    )
    served_model_name: str | None = Field(
        None, description="Name reported by /v1/models and accepted as `model`; default: `model`."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto = CUDA (bf16) when available, else CPU (float32)."
    )
    host: str = Field("127.0.0.1", description="Bind address.")
    allowed_hosts: AllowedHosts = Field(
        default_factory=list,
        description="Host names accepted besides loopback ones and the bind address (e.g. the "
        "name the gateway calls the worker by); comma-separated in the environment. See "
        "broker.asgi.guard.",
    )
    allowed_origins: AllowedOrigins = Field(
        default_factory=list, description="Web origins allowed to call the worker (default none)."
    )
    port: int = Field(8000, ge=0, le=65535, description="Bind port (0 = any free port).")
    safety_checker: str | None = Field(
        None,
        description="Image safety checker loaded with the model: 'tiny' (random weights, tests), a "
        "Hub id such as CompVis/stable-diffusion-safety-checker, or a directory; none by default "
        "(answers then say that no check ran).",
    )
    public_base_url: str | None = Field(
        None,
        description="Base URL used in `url` responses (e.g. https://worker.example); "
        "default: the base URL the request arrived on.",
    )
    idle_unload_seconds: float = Field(
        600.0, ge=0, description="Unload the model after this many idle seconds (0 = never)."
    )
    queue_size: int = Field(
        8, ge=0, description="Jobs allowed to wait behind the running one; more get HTTP 429."
    )
    max_n: int = Field(4, ge=1, le=16, description="Largest `n` (images per request).")
    max_inference_steps: int = Field(100, ge=1, description="Largest `num_inference_steps`.")
    max_upload_bytes: int = Field(
        20 * 1024 * 1024, ge=1, description="Largest uploaded image (edits), in bytes."
    )
    file_ttl_seconds: float = Field(
        3600.0, gt=0, description="How long images served for `url` responses stay available."
    )
    job_ttl_seconds: float = Field(
        3600.0, gt=0, description="How long finished async jobs stay queryable."
    )
    webhook_attempts: int = Field(3, ge=1, le=10, description="Webhook POST attempts per job.")
    webhook_timeout_seconds: float = Field(
        5.0, gt=0, le=60, description="Timeout of one webhook POST (connect, read, write)."
    )
    webhook_allow_private: bool = Field(
        False,
        description="Also POST webhooks to loopback, private and link-local addresses "
        "(default: public addresses only).",
    )
    log_level: str = Field("info", description="uvicorn log level.")
    attention_backend: AttentionBackend = Field(
        "auto",
        description="Attention of the transformer (diffusers backend): auto = native (PyTorch "
        "SDPA, which picks a flash / memory-efficient / cuDNN kernel itself); _native_flash, "
        "_native_efficient, _native_cudnn, flash (flash-attn 2), _flash_3 (flash-attn 3), sage "
        "need CUDA and their package; off with the reason in /v1/internal/status otherwise.",
    )
    compile: bool = Field(
        False, description="torch.compile the transformer (CUDA with Triton only; slow first call)."
    )
    compile_mode: CompileMode = Field(
        "default", description="torch.compile mode: default or max-autotune (longer compile)."
    )
    cuda_graphs: bool = Field(
        False,
        description="Capture CUDA graphs (compile mode reduce-overhead; needs compile=true, CUDA; "
        "one capture per image size and n).",
    )
    batch_n: bool = Field(
        True,
        description="Make the n images of a request in one pipeline call (false: one call per "
        "image). Image i of a request with seed s is the image of seed s+i with n=1 either way.",
    )

    @model_validator(mode="after")
    def _cuda_graphs_need_compile(self) -> WorkerSettings:
        if self.cuda_graphs and not self.compile:
            raise ValueError(
                "cuda_graphs needs compile=true (CUDA graphs are captured by torch.compile)"
            )
        return self

    def performance_options(self) -> PerformanceOptions:
        """The speed settings as :class:`PerformanceOptions` (for the image engine)."""
        return PerformanceOptions(
            attention_backend=self.attention_backend,
            compile=self.compile,
            compile_mode=self.compile_mode,
            cuda_graphs=self.cuda_graphs,
            batch_n=self.batch_n,
        )

    @property
    def model_name(self) -> str:
        """The model name clients see (``served_model_name`` or ``model``)."""
        return self.served_model_name or self.model

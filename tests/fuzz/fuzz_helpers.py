"""Helpers of the hostile-input and fuzz tests (imported by name): the serve API key, a minimal
OpenAI-compatible chat backend and the tally of outcomes."""

from __future__ import annotations

from collections import Counter

from fastapi import FastAPI, Request

__all__ = ["API_KEY", "USAGE", "Tally", "chat_backend"]

API_KEY = "sk-fuzz-test"
USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def chat_backend() -> FastAPI:
    """An OpenAI-compatible ``/chat/completions`` that answers every JSON object with usage."""
    app = FastAPI()

    @app.post("/chat/completions")
    async def chat(request: Request) -> dict:
        body = await request.json()
        return {
            "id": "chatcmpl-f",
            "object": "chat.completion",
            "created": 1,
            "model": body.get("model") if isinstance(body, dict) else None,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "ok"},
                }
            ],
            "usage": USAGE,
        }

    return app


class Tally:
    """Counts of hostile requests: ``tried``, ``refused`` (4xx as expected), ``accepted`` (2xx where
    a refusal was expected), ``5xx``; printed at the end of the session."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def record(self, status: int, *, expect_refusal: bool = True) -> None:
        self.counts["tried"] += 1
        self.counts[f"s{status}"] += 1
        if status >= 500:
            self.counts["5xx"] += 1
        elif 400 <= status < 500:
            self.counts["refused"] += 1
        elif expect_refusal:
            self.counts["wrongly accepted"] += 1
        else:
            self.counts["accepted"] += 1

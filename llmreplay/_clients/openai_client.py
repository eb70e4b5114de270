"""``OpenAIClient``: the OpenAI API (or any OpenAI-compatible server via ``BASE_URL``)."""

from __future__ import annotations

import os
from typing import Any

from .base import BaseClient


class OpenAIClient(BaseClient):
    """An OpenAI client with config, retries and cache.

    >>> client = OpenAIClient(model="gpt-4o-mini", temperature=0)
    >>> client.send_message([{"role": "user", "content": "Hi"}]).content
    """

    api_type = "openai"

    def __init__(self, *args: Any, api_key: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._api_key = api_key

    def _credentials(self) -> bool:
        return bool(self._api_key or os.environ.get("OPENAI_API_KEY"))

    def _build(self, asynchronous: bool, http_client: Any) -> Any:
        import openai

        from .._cassette import PLACEHOLDER_KEY

        # No key: the SDK raises its own "missing credentials" error, unless every call is
        # answered from a recording (see BaseClient._offline); a placeholder is never sent.
        key = self._api_key or os.environ.get("OPENAI_API_KEY")
        if not key and self._offline():
            key = PLACEHOLDER_KEY
        cls = openai.AsyncOpenAI if asynchronous else openai.OpenAI
        return cls(
            api_key=key,
            base_url=self.config.base_url,
            max_retries=0,  # this layer retries; the SDK would multiply attempts
            timeout=self.config.timeout,
            http_client=http_client,
        )

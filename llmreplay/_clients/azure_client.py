"""``AzureClient``: Azure OpenAI, with an API key or an Entra ID token provider."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .._errors import ConfigError
from .base import BaseClient


class AzureClient(BaseClient):
    """An Azure OpenAI client: deployments, api-version, key or Entra ID token.

    Settings: ``AZURE_ENDPOINT`` (or ``AZURE_OPENAI_ENDPOINT``), ``AZURE_API_VERSION``,
    ``AZURE_DEPLOYMENT`` (the chat deployment; default: the model name) and the key from
    ``api_key=``, ``AZURE_OPENAI_API_KEY`` or TinyTroupe's ``AZURE_OPENAI_KEY``, or
    ``token_provider=`` (a callable returning an Entra ID token, e.g.
    ``azure.identity.get_bearer_token_provider(...)``).
    """

    api_type = "azure"

    def __init__(
        self,
        *args: Any,
        api_key: str | None = None,
        token_provider: Callable[[], str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._api_key = api_key
        self._token_provider = token_provider

    def _deployment(self, model: str) -> str:
        deployment = self.config.azure_deployment
        return deployment if deployment and model == self.config.model else model

    def _key(self) -> str | None:
        return (
            self._api_key
            or os.environ.get("AZURE_OPENAI_API_KEY")
            or os.environ.get("AZURE_OPENAI_KEY")
        )

    def _credentials(self) -> bool:
        return self._token_provider is not None or bool(self._key())

    def _key_variable(self) -> str:
        return "AZURE_OPENAI_API_KEY (or AZURE_OPENAI_KEY)"

    def _build(self, asynchronous: bool, http_client: Any) -> Any:
        import openai

        from .._cassette import PLACEHOLDER_KEY

        endpoint = self.config.azure_endpoint or os.environ.get("AZURE_OPENAI_ENDPOINT")
        if not endpoint:
            raise ConfigError(
                "AZURE_ENDPOINT", None, "the client settings", "set it (or AZURE_OPENAI_ENDPOINT)"
            )
        credentials: dict[str, Any] = {}
        if self._token_provider is not None:
            credentials["azure_ad_token_provider"] = self._token_provider
        else:
            key = self._key() or (PLACEHOLDER_KEY if self._offline() else None)
            if not key:
                raise ConfigError(
                    "api_key",
                    None,
                    "AzureClient",
                    "pass api_key= or token_provider=, or set AZURE_OPENAI_API_KEY "
                    "(or TinyTroupe's AZURE_OPENAI_KEY)",
                )
            credentials["api_key"] = key
        cls = openai.AsyncAzureOpenAI if asynchronous else openai.AzureOpenAI
        return cls(
            azure_endpoint=endpoint,
            api_version=self.config.azure_api_version,
            max_retries=0,
            timeout=self.config.timeout,
            http_client=http_client,
            **credentials,
        )

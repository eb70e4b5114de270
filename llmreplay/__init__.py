"""llmreplay: record LLM API calls once, replay them offline and deterministically forever.

>>> import llmreplay
>>> with llmreplay.cassette("fixtures/cassettes/examples/greet.msgpack", mode="replay") as cas:
...     ...  # every httpx2 client (openai, anthropic) now goes through the cassette

A TinyTroupe project switches with ``import llmreplay as openai_utils``: ``client()``,
``default``, ``config``, ``logger``, ``LLMCall``, ``force_*`` and ``register_client`` are here.
"""

from __future__ import annotations

from . import faults
from ._cassette import Cassette, Stats, cassette
from ._clients import (
    AzureClient,
    ClientConfig,
    LLMCall,
    OpenAIClient,
    Reply,
    RetryPolicy,
    _get_client_for_api_type as _get_client_for_api_type,  # TinyTroupe code calls it
    client,
    default,
    force_api_cache,
    force_api_type,
    force_default_value,
    get_embedding,
    ini as config,
    logger,
    register_client,
)
from ._errors import (
    CassetteError,
    CassetteMiss,
    ConfigError,
    InvalidRequestError,
    LLMReplayError,
    NetworkBlocked,
    NonTerminalError,
    RequestRefused,
)
from ._format import FORMAT_VERSION, Interaction, RecordedRequest, RecordedResponse
from ._match import MatchPart
from ._modes import Mode
from ._storage import FileStorage, Storage
from ._tokens import count_tokens
from ._transport import CassetteTransport
from ._version import __version__

__all__ = [
    "FORMAT_VERSION",
    "AzureClient",
    "Cassette",
    "CassetteError",
    "CassetteMiss",
    "CassetteTransport",
    "ClientConfig",
    "ConfigError",
    "FileStorage",
    "Interaction",
    "InvalidRequestError",
    "LLMCall",
    "LLMReplayError",
    "MatchPart",
    "Mode",
    "NetworkBlocked",
    "NonTerminalError",
    "OpenAIClient",
    "RecordedRequest",
    "RecordedResponse",
    "Reply",
    "RequestRefused",
    "RetryPolicy",
    "Stats",
    "Storage",
    "__version__",
    "cassette",
    "client",
    "config",
    "count_tokens",
    "default",
    "faults",
    "force_api_cache",
    "force_api_type",
    "force_default_value",
    "get_embedding",
    "logger",
    "register_client",
]

for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type):
        _obj.__module__ = "llmreplay"
del _name, _obj

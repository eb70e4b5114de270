"""``LLMCall``: a prompt template, model parameters, and a call that fills and sends it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._errors import ConfigError

_TEMPLATE_SUFFIXES = (".j2", ".jinja", ".jinja2", ".md", ".txt", ".mustache")


class LLMCall:
    """A reusable call: system (and optional user) templates rendered with Jinja2.

    A template is a file name in the templates folder (``TEMPLATES_DIR``, default
    ``prompts/``) when it ends in ``.j2``, ``.jinja``, ``.md``, ``.txt`` or ``.mustache``;
    otherwise it is the template text itself. Missing variables are errors, not blanks.

    >>> summary = LLMCall("You summarise {{ kind }} text.", "{{ text }}", temperature=0)
    >>> summary.call(kind="legal", text="...")
    """

    def __init__(
        self,
        system_template: str,
        user_template: str | None = None,
        *,
        client: Any = None,
        templates_dir: str | Path | None = None,
        **model_params: Any,
    ) -> None:
        self.system_template = system_template
        self.user_template = user_template
        self.model_params = model_params
        self.templates_dir = templates_dir
        self._client = client
        self.messages: list[dict[str, str]] = []
        self.reply: Any = None

    def __repr__(self) -> str:
        return (
            f"LLMCall(system_template={self.system_template!r}, "
            f"user_template={self.user_template!r}, model_params={self.model_params!r})"
        )

    def _client_or_default(self) -> Any:
        if self._client is not None:
            return self._client
        from . import client

        return client()

    def _environment(self) -> Any:
        try:
            import jinja2
        except ImportError:
            raise ImportError("LLMCall needs Jinja2: pip install 'llmreplay[client]'") from None
        folder = self.templates_dir or self._client_or_default().config.templates_dir
        return jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(folder)),
            undefined=jinja2.StrictUndefined,
            autoescape=False,  # prompts are plain text, not HTML
            keep_trailing_newline=False,
        )

    def render(self, **variables: Any) -> list[dict[str, str]]:
        """The chat messages the templates make with ``variables``."""
        import jinja2

        env = self._environment()
        messages = []
        for role, template in (("system", self.system_template), ("user", self.user_template)):
            if template is None:
                continue
            try:
                if template.endswith(_TEMPLATE_SUFFIXES):
                    text = env.get_template(template).render(**variables)
                else:
                    text = env.from_string(template).render(**variables)
            except jinja2.TemplateNotFound:
                raise ConfigError(
                    "template",
                    template,
                    f"LLMCall ({role})",
                    f"no such file in {getattr(env.loader, 'searchpath', '?')}",
                ) from None
            except jinja2.UndefinedError as exc:
                raise ConfigError(
                    "template variable", str(exc), f"LLMCall ({role})", "pass it to call()"
                ) from None
            messages.append({"role": role, "content": text})
        return messages

    def call(self, **variables: Any) -> Any:
        """Render, send, and return the reply's content (or its parsed object when a
        ``response_format`` was given)."""
        self.messages = self.render(**variables)
        self.reply = self._client_or_default().send_message(self.messages, **self.model_params)
        if self.model_params.get("response_format") is not None:
            return self.reply.parsed
        return self.reply.content

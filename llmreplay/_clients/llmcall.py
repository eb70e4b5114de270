"""``LLMCall``: a prompt template, model parameters, and a call that fills and sends it.

Templates are Jinja2 (``.j2`` files and inline text), or mustache for ``.mustache`` files
(TinyTroupe's prompts) and ``engine="mustache"``, rendered by pystache with mustache's
semantics: ``{{x}}`` HTML-escaped, ``{{{x}}}`` raw, sections, inverted sections, partials
from the templates folder, and a missing name renders empty.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._errors import ConfigError

_TEMPLATE_SUFFIXES = (".j2", ".jinja", ".jinja2", ".md", ".txt", ".mustache")
_ENGINES = "expected jinja2 or mustache"


class LLMCall:
    """A reusable call: system (and optional user) templates, rendered and sent.

    A template is a file name in the templates folder (``TEMPLATES_DIR``, default
    ``prompts/``) when it ends in ``.j2``, ``.jinja``, ``.md``, ``.txt`` or ``.mustache``;
    otherwise it is the template text itself. ``.mustache`` files (or any template with
    ``engine="mustache"``) render as mustache; the others with Jinja2, where a missing
    variable is an error, not a blank.

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
        engine: str | None = None,
        **model_params: Any,
    ) -> None:
        if engine not in (None, "jinja2", "mustache"):
            raise ConfigError("template engine", engine, "LLMCall(engine=...)", _ENGINES)
        self.engine = engine
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

    def _folder(self) -> Path:
        return Path(self.templates_dir or self._client_or_default().config.templates_dir)

    def _environment(self) -> Any:
        try:
            import jinja2
        except ImportError:
            raise ImportError(
                "LLMCall needs Jinja2: pip install 'pytest-llmreplay[client]'"
            ) from None
        return jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(self._folder())),
            undefined=jinja2.StrictUndefined,
            autoescape=False,  # prompts are plain text, not HTML
            keep_trailing_newline=False,
        )

    def _mustache(self, role: str, template: str, variables: dict[str, Any]) -> str:
        try:
            import pystache
        except ImportError:
            raise ImportError(
                "mustache templates need pystache: pip install 'pytest-llmreplay[client]'"
            ) from None
        folder = self._folder()
        renderer = pystache.Renderer(search_dirs=[str(folder)], file_extension="mustache")
        if template.endswith(_TEMPLATE_SUFFIXES):
            path = folder / template
            if not path.is_file():
                raise ConfigError(
                    "template", template, f"LLMCall ({role})", f"no such file in {folder}"
                )
            template = path.read_text(encoding="utf-8")
        try:
            return str(renderer.render(template, variables))
        except (pystache.parser.ParsingError, pystache.common.PystacheError) as exc:
            raise ConfigError(
                "mustache template", str(exc), f"LLMCall ({role})", "fix the template"
            ) from None

    def render(self, **variables: Any) -> list[dict[str, str]]:
        """The chat messages the templates make with ``variables``."""
        messages = []
        for role, template in (("system", self.system_template), ("user", self.user_template)):
            if template is None:
                continue
            if self.engine == "mustache" or (
                self.engine is None and template.endswith(".mustache")
            ):
                messages.append(
                    {"role": role, "content": self._mustache(role, template, variables)}
                )
            else:
                messages.append({"role": role, "content": self._jinja(role, template, variables)})
        return messages

    def _jinja(self, role: str, template: str, variables: dict[str, Any]) -> str:
        import jinja2

        env = self._environment()
        try:
            if template.endswith(_TEMPLATE_SUFFIXES):
                return str(env.get_template(template).render(**variables))
            return str(env.from_string(template).render(**variables))
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

    def call(self, **variables: Any) -> Any:
        """Render, send, and return the reply's content (or its parsed object when a
        ``response_format`` was given)."""
        self.messages = self.render(**variables)
        self.reply = self._client_or_default().send_message(self.messages, **self.model_params)
        if self.model_params.get("response_format") is not None:
            return self.reply.parsed
        return self.reply.content

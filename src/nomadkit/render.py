"""The one jinja2 environment: every file nomadkit puts on a kit is rendered here."""

from __future__ import annotations

from functools import cache

import jinja2

from nomadkit import ROOT

TEMPLATES = ROOT / "templates"


@cache
def environment() -> jinja2.Environment:
    """Strict: an undefined value is an error, never an empty string in a config file."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def render(template: str, **context: object) -> str:
    """Render `templates/<template>` with the given values."""
    return environment().get_template(template).render(**context)

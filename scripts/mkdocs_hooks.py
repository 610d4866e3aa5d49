"""mkdocs hooks: the generated config reference (scripts/config_reference.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from mkdocs.structure.files import File

_spec = importlib.util.spec_from_file_location(
    "config_reference", Path(__file__).with_name("config_reference.py")
)
config_reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(config_reference)


def on_files(files, config):
    files.append(File.generated(config, "reference/config.md", content=config_reference.render()))
    return files

"""The Rationales panel's export: write the open build's records for training into <build>/exports/<name>
(`kdviz.rationales.export.export_build`), and push an export to the Hugging Face hub."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kdviz.rationales.export import EXPORT_FORMATS as EXPORT_FORMATS  # the panel's choices
from kdviz.rationales.export import export_build, push_to_hub
from kdviz.workspace import Workspace


def export(
    workspace: str | Path, build: str, name: str, formats: Sequence[str], accepted_only: bool = True
) -> list[str]:
    """Writes the build's records (accepted only, or all with a status column) in `formats`; returns the paths.

    Raises:
        InputError: no format, a bad export name, nothing accepted.  UnknownNameError: unknown format.
    """
    return [str(p) for p in export_build(Workspace(workspace), build, name, list(formats or ()), accepted_only)]


def push(workspace: str | Path, build: str, name: str, repo_id: str) -> str:
    """Pushes export `name` (its `hf` format) to the Hugging Face hub as a private dataset; returns a message."""
    url = push_to_hub(Workspace(workspace).export_dir(build, name), repo_id)
    return f"Pushed to [{url}]({url}) (private)."

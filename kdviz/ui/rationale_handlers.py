"""The Rationales panel's builds: which builds the workspace holds, opening one, importing a records file as one.

Plain typed functions of widget values over `kdviz.workspace` and `kdviz.rationales.curation`; they raise
KdvizError like the library, and the tabs turn that into `gr.Error` with `ui_errors`. Building is in
`build_handlers` (and `build_job`), curating in `curation_views` and `curation_handlers`, exporting in
`export_handlers`.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from kdviz.rationales.curation import import_build, open_build
from kdviz.workspace import Workspace

from .build_handlers import command_markdown


class OpenedBuild(NamedTuple):
    """A build opened in the panel: its name, a Markdown message, and the command that rebuilds it (Markdown)."""

    build: str
    message: str
    command: str


def workspace_root(workspace: str | Path | None = None) -> Path:
    """Returns the absolute workspace folder: `workspace`, else $KDVIZ_WORKSPACE, else ./kdviz_workspace."""
    return Workspace(workspace).root


def list_builds(workspace: str | Path) -> list[str]:
    """Returns the names of the builds in the workspace, newest first."""
    return Workspace(workspace).list_builds()


def open_existing(workspace: str | Path, name: str) -> OpenedBuild:
    """Opens build `name` of the workspace (checking it is one)."""
    info = open_build(Workspace(workspace), name).info
    return OpenedBuild(name, f"Opened build **{name}**.", command_markdown(info.command))


def import_records(workspace: str | Path, path: str | Path, name: str = "") -> OpenedBuild:
    """Creates a build from a JSONL file of rationale records (`kdviz rationales --out`) and opens it."""
    info = import_build(Workspace(workspace), path, name)
    count = open_build(Workspace(workspace), info.name).counts()["total"]
    return OpenedBuild(info.name, f"Build **{info.name}**: {count} records imported from {info.source}.", "")

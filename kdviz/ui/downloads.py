"""Files the app offers for download (a comparison's report, an export), served from gradio's own file cache.

The workspace may lie outside the folders gradio serves from, so a download is a copy in gradio's cache. The copy
is gradio's content-addressed one: the same file handed out again (a comparison reopened ten times) reuses it
instead of adding 4.8 MB to the temp folder each time (issue #15), and the app's `delete_cache` removes it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from gradio.processing_utils import save_file_to_cache
from gradio.utils import get_upload_folder

# Swept every hour, each copy a day after it was last handed out; all of them when the app stops (gr.Blocks).
DELETE_CACHE = (3600, 86400)


def served(paths: Iterable[str | Path]) -> list[str]:
    """Returns the paths of the files' copies in gradio's cache (one copy per content, made once)."""
    cache = get_upload_folder()
    return [save_file_to_cache(path, cache) for path in paths]

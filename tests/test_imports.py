"""What importing kdviz costs: the library loads no UI, and the CLI's parser loads no model stack."""

import subprocess
import sys

import pytest


def modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print('MODULES', ' '.join(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return set(out.stdout.rpartition("MODULES ")[2].split())  # not the help text printed before (it names torch)


@pytest.mark.parametrize(
    "code",
    [
        "import kdviz",
        "from kdviz.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass",
        "from kdviz.cli import main\nmain(['train', '--help'])",
        "import kdviz.workspace, kdviz.records, kdviz.config, kdviz.data",
    ],
)
def test_light_imports_leave_out_torch_and_gradio(code):
    loaded = modules_after(code)
    assert {"torch", "gradio", "transformers"}.isdisjoint(loaded), sorted({"torch", "gradio", "transformers"} & loaded)


def test_public_api_names_resolve():
    import kdviz

    missing = [name for name in kdviz.__all__ if getattr(kdviz, name, None) is None]
    assert missing == []
    assert kdviz.load_model.__module__ == "kdviz.lm.models"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        kdviz.nope  # noqa: B018

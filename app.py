"""Hugging Face Spaces entry point: `python app.py` serves the kdviz workbench on http://127.0.0.1:7860."""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from kdviz.ui import build_app  # noqa: E402  (after the defaults above: gradio reads them when imported)

demo = build_app(teacher=os.environ.get("KDVIZ_TEACHER", "embedded-teacher"))

if __name__ == "__main__":
    demo.launch(server_name="127.0.0.1", server_port=7860, share=False)

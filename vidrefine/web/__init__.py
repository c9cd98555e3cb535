"""The page (`vidrefine serve`): a Gradio app over the Python API, with a job queue.

`server.py` checks the options, starts it and stops it cleanly, `lock.py` keeps one server per
work folder, `app.py` lays the page out and names its endpoints, `jobs.py` runs one job at a
time on the device, `engine.py` holds the loaded models, and `paths.py` keeps every request
inside the work and output folders; `handlers.py` is what each endpoint does, `captioning.py`
reads the caption box, `notices.py` says which weights are loaded and when a size is too large,
and `report.py` writes a job's compare report.
"""

from __future__ import annotations

__all__ = [
    "app",
    "captioning",
    "engine",
    "handlers",
    "jobs",
    "lock",
    "notices",
    "paths",
    "report",
    "server",
]

"""The report page `syngen inspect` writes: one self-contained HTML file (styles, scripts, images and plots
inline; no server, no network).

:func:`write_page` looks at the folder: a training output (``metrics.jsonl`` or ``trainer_state.json``) gets the
training page (:mod:`syngen.page.training`), a run's output folder the dataset page (:mod:`syngen.page.run`).
Both are written to ``<folder>/inspect/index.html``.
"""

from __future__ import annotations

from pathlib import Path


def is_training(folder: Path) -> bool:
    """True for a ``syngen train`` output folder (or one of its checkpoints)."""
    return (Path(folder) / "metrics.jsonl").is_file() or (Path(folder) / "trainer_state.json").is_file()


def write_page(folder: Path, n: int = 16) -> Path:
    """Writes ``<folder>/inspect/index.html`` (``n``: samples and pairs shown on a run's page); returns its path."""
    from syngen.page.run import run_page
    from syngen.page.training import training_page

    text = training_page(folder) if is_training(folder) else run_page(folder, n)
    page = Path(folder) / "inspect" / "index.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    partial = page.with_name(page.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(page)  # a reader never sees half a page
    return page

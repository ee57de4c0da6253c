"""Run a notebook top to bottom as nbdev_test does (cells marked `#| eval: false` skipped) and store its outputs.

    python tools/run_tutorial.py nbs/tutorials/02_tradeoff.ipynb [...]

Tutorials keep their figures; run `nbdev_clean` afterwards. Cells run in the notebook's own folder."""
import os
import sys
import time
from pathlib import Path

from execnb.nbio import read_nb, write_nb
from execnb.shell import CaptureShell


def _skip(cell) -> bool:
    if cell.cell_type != 'code': return True
    lines = [l.strip().replace(' ', '') for l in cell.source.splitlines() if l.strip().startswith('#|')]
    return '#|eval:false' in lines or 'nbdev_export(' in cell.source


def run(path: Path):
    path = path.resolve()
    nb = read_nb(path)
    for cell in nb.cells:  # a cell that prints nothing now must not keep what it printed before
        if cell.cell_type == 'code': cell.outputs, cell.execution_count = [], None
    shell, cwd, t0 = CaptureShell(path), os.getcwd(), time.time()
    os.chdir(path.parent)
    try: shell.run_all(nb, exc_stop=True, preproc=_skip)
    finally: os.chdir(cwd)
    write_nb(nb, path)
    print(f'{path.name}: {time.time() - t0:.0f} s')


if __name__ == '__main__':
    if len(sys.argv) < 2: sys.exit(__doc__)
    for p in sys.argv[1:]: run(Path(p))

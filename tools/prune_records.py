"""Delete the stored evaluations that no bundled model can reuse: every line of `nbs/world/*.jsonl` whose key names a
model fingerprint (`imagic.state.model_fingerprint`) that is not one of the bundled models'.

    python tools/prune_records.py            # report what would go
    python tools/prune_records.py --write    # rewrite the files without those lines

Run it after a bundled model is retrained and its records are measured again (no other process writing to them)."""
import json
import re
import sys
from collections import Counter
from pathlib import Path

import imagic
from imagic.core import BUNDLED_MODELS
from imagic.state import model_fingerprint

ROOT = Path(__file__).resolve().parent.parent
FINGERPRINT = re.compile(r'\b[0-9a-f]{64}\b')


def main(argv=None):
    write = '--write' in (argv if argv is not None else sys.argv[1:])
    keep = {model_fingerprint(imagic.load_pipeline(name, device='cpu')) for name in BUNDLED_MODELS}
    for path in sorted((ROOT / 'nbs' / 'world').glob('*.jsonl')):
        lines = path.read_text().splitlines()
        kept, gone = [], Counter()
        for line in lines:
            fps = set(FINGERPRINT.findall(json.loads(line)['key']))
            if fps <= keep: kept.append(line)
            else: gone[', '.join(sorted(f[:8] for f in fps - keep))] += 1
        print(f"{path.name}: keep {len(kept)} of {len(lines)}" + (f"; drop {dict(gone)}" if gone else ''))
        if write and gone:
            if kept: path.write_text('\n'.join(kept) + '\n')
            else: path.unlink()


if __name__ == '__main__':
    main()

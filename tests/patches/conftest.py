"""Fast runtime tests: the patches with plain-dict ``extra``, fake apply_model and fake
ModelPatchers; no host. The repo is imported as the package ``consistory_pack``."""
import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.append(ROOT)  # appended: the repo's nodes/ must not shadow a host's nodes.py

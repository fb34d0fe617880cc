"""Where the browser tests find the repository, the built site and the screenshot folder."""
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SITE = Path(os.environ.get("LMBOOK_SITE_DIR", ROOT / "_build" / "html")).resolve()
SCREENSHOTS = Path(os.environ.get("LMBOOK_SCREENSHOTS", ROOT / "_build" / "screenshots")).resolve()

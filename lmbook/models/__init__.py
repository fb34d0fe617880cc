"""Models built on lmbook.attention (work in progress: see issue 3)."""

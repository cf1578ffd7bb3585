"""The 2D PNG workflow's inferer (the workflow itself is the lung_png2d bundle)."""

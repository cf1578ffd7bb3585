"""End-to-end workflows built from volseg parts (the 2D PNG workflow)."""

"""Compressed layouts of convolution inputs (filled in by formats/ecr.py and formats/pecr.py)."""

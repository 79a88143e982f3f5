"""The captioning library's entry points, apart from the library itself: the batch command line
(`python -m captioning caption | list | convert`, cli.py), the Ray engine it starts (ray_engine.py) and what the
two share (common.py). Nothing in the library imports this package."""

"""The namespace lab (lab.py) and the demo and benchmark built on it, importable as a package."""

"""cppnet tests (the Python parts: integration/)."""

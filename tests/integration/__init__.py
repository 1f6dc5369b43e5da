"""Integration tests in the namespace lab; run as python3 -m tests.integration.test_NAME from the project root."""

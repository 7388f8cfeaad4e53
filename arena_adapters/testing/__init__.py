"""Testing kit for arena-adapters plugins: golden vectors and conformance contract tests."""

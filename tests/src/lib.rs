//! Shared helpers for the workspace-wide tests in `tests/tests/`.

//! End-to-end tests for heapscope live in `tests/tests/`.

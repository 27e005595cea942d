"""Models: training, native artifacts with checksums, verified loading and vectorised inference."""

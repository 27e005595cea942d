"""The decision pipeline's stages: pure, vectorised functions over the whole universe (see docs/pipeline.md)."""

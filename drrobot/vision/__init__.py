"""Adapters to vision foundation models (optional extras), each a differentiable score of rendered images."""

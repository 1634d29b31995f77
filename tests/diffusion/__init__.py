"""Tests of the diffusion nodes, the tiny model and the memory arbiter."""

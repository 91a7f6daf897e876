"""Rollout of a registered challenger: state machine, lock, traffic backends, controller (DESIGN §8)."""

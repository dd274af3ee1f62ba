"""Random number generator states, saved in last.pt so that a resumed run draws exactly what it would have."""

from __future__ import annotations

import random

import torch


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def gather_rng_states() -> list[dict]:
    """Every rank's RNG state (rank r resumes with entry r)."""
    state = rng_state()
    if not torch.distributed.is_initialized():
        return [state]
    states = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(states, state)
    return states


class RngStates:
    """Every rank's RNG states as one part of last.pt: state_dict gathers them (every rank calls it: a collective
    under DDP), load_state_dict gives rank r entry r (the last entry when a run resumes on more ranks)."""

    def __init__(self, rank: int):
        self.rank = rank

    def state_dict(self) -> list[dict]:
        return gather_rng_states()

    def load_state_dict(self, states: list[dict]) -> None:
        set_rng_state(states[min(self.rank, len(states) - 1)])

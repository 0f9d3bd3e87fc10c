"""`gym` for the pt-migrate ecosystem check: the corpus scripts that import `gym` already use the gymnasium API
(reset returns (obs, info), step returns 5 values), so this re-exports gymnasium. `make(..., autoreset=True)` (gym
0.26 / gymnasium 0.26-0.29) becomes gymnasium 1.x's Autoreset wrapper."""
import gymnasium as _gymnasium
from gymnasium import *  # noqa: F401,F403
from gymnasium import spaces, wrappers  # noqa: F401


def make(id, *args, autoreset=False, **kwargs):  # noqa: A002
    env = _gymnasium.make(id, *args, **kwargs)
    if autoreset:
        env = _gymnasium.wrappers.Autoreset(env)
    return env

"""`gym` for the pt-migrate ecosystem check: the corpus scripts that import `gym` already use the gymnasium API
(reset returns (obs, info), step returns 5 values), so this re-exports gymnasium."""
from gymnasium import *  # noqa: F401,F403
from gymnasium import make, spaces, wrappers  # noqa: F401

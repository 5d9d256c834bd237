"""The BSuite environments the scripts train for and evaluate in (the real bsuite package).

`BSUITE_ENVS` names the three tasks of the paper; `make_env` builds one, seeded. This is the
BSuite counterpart of common/atari_env.py: it holds no data reading, generation or learning code.
"""

from common.errors import DataError

BSUITE_ENVS = ("catch", "cartpole", "mountain_car")


def check_env_id(env_id: str) -> None:
    """A one-line DataError unless `env_id` is one of BSUITE_ENVS."""
    if env_id not in BSUITE_ENVS:
        raise DataError(f"unknown BSuite env id {env_id!r}; valid ids: {', '.join(BSUITE_ENVS)}")


def make_env(env_id: str, seed: int):
    """The real bsuite environment (a dm_env.Environment) for `env_id`, seeded with `seed`."""
    check_env_id(env_id)
    if env_id == "catch":
        from bsuite.environments import catch

        return catch.Catch(seed=seed)
    if env_id == "cartpole":
        from bsuite.environments import cartpole

        return cartpole.Cartpole(seed=seed)
    from bsuite.environments import mountain_car

    return mountain_car.MountainCar(seed=seed)

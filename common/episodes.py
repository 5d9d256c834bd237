"""The episodic data type every loader produces and every sampler consumes.

An `Episodes` holds whole episodes as RLDS steps, concatenated in episode order along the
first axis. Step i of an episode carries the observation o_i, the action a_i taken there, and
the reward and discount that followed a_i. The last step of an episode (is_last) carries the
final observation; its action, reward and discount are padding (zeros) and are never used as
a transition. An episode of T transitions therefore has T + 1 steps.
"""

from typing import NamedTuple

import numpy as np

from common.errors import DataError


class Episodes(NamedTuple):
    observation: np.ndarray  # [N, *obs_shape], float32 (BSuite) or uint8 (Atari)
    action: np.ndarray  # [N] int32, action a_i taken at step i (0 on the last step)
    reward: np.ndarray  # [N] float32, reward after a_i (0 on the last step)
    discount: np.ndarray  # [N] float32, discount after a_i (0 when a_i ended the episode in a terminal state)
    is_first: np.ndarray  # [N] bool, first step of an episode
    is_last: np.ndarray  # [N] bool, last step of an episode (holds the final observation)
    is_terminal: np.ndarray  # [N] bool, last step and the final observation is terminal (value 0)

    @property
    def num_steps(self) -> int:
        return int(self.is_last.shape[0])

    @property
    def num_episodes(self) -> int:
        return int(np.sum(self.is_last))

    @property
    def num_transitions(self) -> int:
        return self.num_steps - self.num_episodes

    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of each episode, in order."""
        episode_id = np.cumsum(self.is_first) - 1
        return np.bincount(episode_id, weights=self.reward.astype(np.float64), minlength=self.num_episodes)


def validate_episodes(episodes: Episodes, source: str) -> None:
    """Raise ValueError with one clear line if `episodes` breaks the layout above."""
    n = episodes.num_steps
    for name, value in episodes._asdict().items():
        if value.shape[0] != n:
            raise DataError(f"{source}: field '{name}' has {value.shape[0]} steps, expected {n}")
    if n == 0:
        raise DataError(f"{source}: the dataset holds no steps")
    if not episodes.is_first[0] or not episodes.is_last[-1]:
        raise DataError(f"{source}: episodes are cut: the data must start with is_first and end with is_last")
    starts = np.flatnonzero(episodes.is_first)
    ends = np.flatnonzero(episodes.is_last)
    if len(starts) != len(ends) or np.any(ends[:-1] + 1 != starts[1:]) or np.any(ends < starts):
        raise DataError(f"{source}: is_first/is_last do not delimit whole episodes")
    if np.any(ends == starts):
        raise DataError(f"{source}: an episode has no transition (a single step)")


def _where(episodes: Episodes, step: int) -> str:
    """'episode e, step t' of flat step index `step` (episodes counted from 0 in stored order)."""
    episode = int(np.sum(episodes.is_first[: step + 1])) - 1
    first = int(np.flatnonzero(episodes.is_first[: step + 1])[-1])
    return f"episode {episode}, step {step - first}"


def check_values(episodes: Episodes, source: str, num_actions: int | None = None) -> None:
    """Raise DataError with one line saying where, if a reward or a discount is not finite, a
    discount lies outside [0, 1], a floating-point observation is not finite, or (given
    `num_actions`) an action lies outside 0..num_actions-1. Padding steps (is_last) hold zeros and
    are checked too."""
    reward = np.asarray(episodes.reward)
    bad = np.flatnonzero(~np.isfinite(reward))
    if bad.size:
        raise DataError(f"{source}: the reward at {_where(episodes, bad[0])} is {reward[bad[0]]}; the data is corrupt")
    discount = np.asarray(episodes.discount)
    bad = np.flatnonzero(~((discount >= 0.0) & (discount <= 1.0)))  # also catches nan
    if bad.size:
        raise DataError(
            f"{source}: the discount at {_where(episodes, bad[0])} is {discount[bad[0]]}, not in [0, 1]; the data is corrupt"
        )
    if num_actions is not None:
        action = np.asarray(episodes.action)
        bad = np.flatnonzero((action < 0) | (action >= num_actions))
        if bad.size:
            raise DataError(
                f"{source}: the action at {_where(episodes, bad[0])} is {action[bad[0]]}, outside the "
                f"{num_actions} actions 0..{num_actions - 1} of the environment; is this data of that environment?"
            )
    if np.issubdtype(episodes.observation.dtype, np.floating):
        finite = np.isfinite(np.asarray(episodes.observation)).reshape(episodes.num_steps, -1).all(axis=1)
        bad = np.flatnonzero(~finite)
        if bad.size:
            raise DataError(f"{source}: the observation at {_where(episodes, bad[0])} is not finite; the data is corrupt")


def check_data_fraction(data_fraction: float) -> None:
    if not (0.0 < data_fraction <= 1.0):
        raise DataError(f"--data-fraction must be in (0, 1], got {data_fraction}; e.g. 0.01 keeps 1% of the episodes")


def subset_episode_indices(num_episodes: int, data_fraction: float) -> np.ndarray:
    """Indices of a uniform, deterministic subset of round(fraction * n) episodes (at least one).

    The kept episodes are spread evenly over the whole file, so every stage of the behaviour
    agent's training is represented (the paper's Fig. 2a data fractions).
    """
    check_data_fraction(data_fraction)
    count = max(1, int(round(num_episodes * data_fraction)))
    return np.unique(np.round(np.linspace(0, num_episodes - 1, count)).astype(np.int64))


def take_episodes(episodes: Episodes, keep: np.ndarray) -> Episodes:
    """The episodes with indices `keep` (in that order), as one Episodes."""
    episode_id = np.cumsum(episodes.is_first) - 1
    mask = np.isin(episode_id, np.asarray(keep))
    return Episodes(*(field[mask] for field in episodes))


def process_part(episodes: Episodes, process: int, num_processes: int, source: str) -> Episodes:
    """Episodes process, process + P, process + 2P, ...: the disjoint share of one of P processes."""
    if episodes.num_episodes < num_processes:
        raise DataError(
            f"{source}: {episodes.num_episodes} episodes cannot be split over {num_processes} processes; "
            "use a larger --data-fraction or fewer processes"
        )
    return take_episodes(episodes, np.arange(process, episodes.num_episodes, num_processes))

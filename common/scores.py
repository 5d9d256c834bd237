"""Reference returns for normalised scores: (R - random) / (online - random).

BSuite: paper Table 6 (random agent and the online DQN agent that produced the data).
A normalised score of 1 is on par with the data-collecting online agent.
"""

BSUITE_SCORES = {  # env_id: (random return, online DQN return)
    "catch": (-0.667, 1.0),
    "cartpole": (64.83, 1001.0),
    "mountain_car": (-1000.0, -102.16),
}


def reference_scores(env_id: str) -> tuple:
    if env_id not in BSUITE_SCORES:
        raise KeyError(f"no reference scores for '{env_id}'; known: {', '.join(sorted(BSUITE_SCORES))}")
    return BSUITE_SCORES[env_id]


def normalized_score(env_id: str, episode_return: float) -> float:
    random_return, online_return = reference_scores(env_id)
    return (episode_return - random_return) / (online_return - random_return)

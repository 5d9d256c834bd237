"""The acting rule of MuZero Unplugged (mzu.py) and MZU-Q (mzu_q.py), docs/mzu.md item 8: the search with the
online network from the current observation, WITHOUT root Dirichlet noise (even when the learner's search uses
it); the action is sampled from the root's visit distribution, or (--eval-greedy) is its argmax.

The case is the hand-worked model of tests/test_mzu.py: five simulations give the root visits (1, 1, 3) on every
key, so the greedy action is 2 and sampling follows (0.2, 0.2, 0.6). Root noise at the paper's Dirichlet(0.3),
fraction 0.25, reorders the first visits on many keys and moves the most visited action away from 2.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_mzu import one_hot_model

import mzu
import mzu_q

SCRIPTS = {"mzu": mzu, "mzu_q": mzu_q}
NUM_KEYS = 2000  # acting seeds evaluated at once (vmap): a sampled frequency's standard error is <= 0.011
# The learner's root noise (MuZero's constants, the scripts' defaults); acting must ignore it.
DIRICHLET_FRACTION, DIRICHLET_ALPHA = 0.25, 0.3
VISITS = np.array([1.0, 1.0, 3.0])  # the root's visits without noise (worked out in tests/test_mzu.py)
GAMMA = 0.5


def acting_args(script, eval_greedy):
    """The script's Args for the hand-worked case, with the learner's root noise switched on."""
    return script.apply_env_defaults(
        script.Args(
            num_bins=11,
            num_simulations=5,
            discount=GAMMA,
            eval_greedy=eval_greedy,
            dirichlet_fraction=DIRICHLET_FRACTION,
            dirichlet_alpha=DIRICHLET_ALPHA,
        )
    )


def observations():
    """Two environments per seed: o = 0 and o = e2 (root values 0 and V; the same visits). [2, 3]"""
    return jnp.asarray([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]], jnp.float32)


def act_over_keys(script, eval_greedy):
    """The script's acting function on NUM_KEYS seeds (the same params and observations, key i for seed i).
    Returns actions [NUM_KEYS, 2]."""
    network, params = one_hot_model()
    args = acting_args(script, eval_greedy)
    act = script.make_act(network, args.eval_greedy, script.search_settings(args))
    params_s = jax.tree.map(lambda x: jnp.broadcast_to(x, (NUM_KEYS,) + x.shape), params)  # [S, ...]
    obs_s = jnp.broadcast_to(observations(), (NUM_KEYS, 2, 3))  # [S, E, D]
    keys = jax.random.split(jax.random.PRNGKey(7), NUM_KEYS)  # [S]
    compiled = act.lower(params_s, obs_s, keys).compile(compiler_options={"xla_backend_optimization_level": 0})
    return np.asarray(compiled(params_s, obs_s, keys))


@pytest.fixture(scope="module")
def noisy_visit_argmax():
    """The most visited root action of the search WITH the learner's root noise, over NUM_KEYS keys: the case's
    power (acting that added noise would act like this). [NUM_KEYS, 2]"""
    network, params = one_hot_model()
    args = acting_args(mzu, True)

    def most_visited(key):
        search = mzu.mcts(
            network, params, observations(), 1, key, **mzu.search_settings(args), dirichlet_fraction=DIRICHLET_FRACTION
        )
        return jnp.argmax(search.visit_counts, axis=-1)  # [2]

    keys = jax.random.split(jax.random.PRNGKey(11), NUM_KEYS)
    fn = jax.jit(jax.vmap(most_visited))
    return np.asarray(fn.lower(keys).compile(compiler_options={"xla_backend_optimization_level": 0})(keys))


def test_the_paper_root_noise_would_change_the_greedy_action_on_many_keys(noisy_visit_argmax):
    """Without this, the no-noise test below could not fail: noise moves the argmax away from 2 on >= 10% of keys."""
    assert mzu.Args().dirichlet_fraction == DIRICHLET_FRACTION and mzu.Args().dirichlet_alpha == DIRICHLET_ALPHA
    assert mzu_q.Args().dirichlet_fraction == DIRICHLET_FRACTION and mzu_q.Args().dirichlet_alpha == DIRICHLET_ALPHA
    changed = float(np.mean(noisy_visit_argmax != 2))
    assert changed >= 0.10, changed


@pytest.mark.parametrize("script_name", SCRIPTS)
def test_greedy_acting_takes_the_most_visited_action_of_a_search_without_root_noise(script_name):
    """--eval-greedy: action 2 on every key and in both environments (root noise would change it on >= 10%)."""
    actions = act_over_keys(SCRIPTS[script_name], eval_greedy=True)
    assert actions.shape == (NUM_KEYS, 2)
    np.testing.assert_array_equal(actions, np.full((NUM_KEYS, 2), 2))


@pytest.mark.parametrize("script_name", SCRIPTS)
def test_sampled_acting_follows_the_visit_distribution_of_a_search_without_root_noise(script_name):
    """Default (sampling): action frequencies match visits / 5 = (0.2, 0.2, 0.6) within 5 standard errors; all three
    actions are taken (an argmax would take only 2)."""
    assert SCRIPTS[script_name].Args().eval_greedy is False  # sampling is the documented default
    actions = act_over_keys(SCRIPTS[script_name], eval_greedy=False)  # [S, 2]
    expected = VISITS / VISITS.sum()
    for env in range(2):
        freq = np.bincount(actions[:, env], minlength=3) / NUM_KEYS
        stderr = np.sqrt(expected * (1 - expected) / NUM_KEYS)
        assert np.all(np.abs(freq - expected) < 5 * stderr), (env, freq)
    # the two environments' samples are drawn with independent keys, not copied
    assert float(np.mean(actions[:, 0] == actions[:, 1])) < 0.6

"""Resumption and seeds at the function level, for rosmo.py, crr.py and bc.py.

Resume: training 2 x HALF updates in a row equals HALF updates, a `save_checkpoint` /
`load_checkpoint` round trip of the whole TrainState (params, optimiser state, target params,
key, step) into a state of another seed, then HALF more: every leaf exactly equal. Both runs use
the same compiled chunk of HALF updates, so any difference comes from the round trip.

Seeds: agent s of a vmapped multi-seed run trains like a one-seed run with seed s (equal up to
float reassociation under vmap) and, acting greedily, takes exactly the same actions in the same
evaluation episodes. Tiny networks, a synthetic store with catch-sized observations.
"""

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scripts import optimizer_of
from test_replay import synthetic_episodes

from common.evaluation import make_evaluator
from common.replay import make_store
from common.runs import load_checkpoint, save_checkpoint

HALF = 4  # updates per chunk; the straight run trains 2 * HALF
OBS_DIM = 50  # catch's 10 x 5 board, so the trained agents can be evaluated on catch
NUM_ACTIONS = 3


def catch_sized_store():
    """The synthetic episodes of test_replay with their 3 features padded to catch's 50 and rewards scaled to [0, 6]."""
    episodes = synthetic_episodes([4, 7, 3, 9, 5, 6])
    observation = np.pad(episodes.observation, ((0, 0), (0, OBS_DIM - episodes.observation.shape[1])))
    return make_store(episodes._replace(observation=observation, reward=episodes.reward / 100.0))


class Algo:
    """One script's pieces: init(seeds) -> stacked TrainState, chunk(state) -> (state, metrics), act.

    The initial states are made once per tuple of seeds (the chunk donates its input, so `train` copies them).
    """

    def __init__(self, name, init, make_chunk, act):
        self.name, self.act = name, act
        self.init = functools.lru_cache(maxsize=None)(lambda seeds: init(list(seeds)))
        self.chunk = make_chunk(self.init((3, 4)))


def rosmo_algo():
    import rosmo

    # Warm-up 2, a decay after 5 and a target copy every 3 updates: all fall inside 2 * HALF. A 2-step unroll
    # with 2-step targets: half the program of the default 5 and 5, the same code paths.
    args = rosmo.apply_env_defaults(
        rosmo.Args(
            batch_size=8,
            warmup_steps=2,
            lr_decay_steps=5,
            target_update_interval=3,
            behavior_coef=0.0,
            eval_greedy=True,
            unroll_steps=2,
            td_steps=2,
        )
    )
    network = rosmo.networks.MuZeroNetwork(
        num_actions=NUM_ACTIONS,
        num_bins=args.num_bins,
        dynamics_layers=(8, 16, 8),
        representation_layers=(16, 8),
        prediction_layers=(8,),
    )

    optimizer = optimizer_of(rosmo, args)

    def init(seeds):
        return rosmo.init_train_states(network, optimizer, jnp.zeros((1, OBS_DIM)), seeds)

    def make_chunk(state):
        return rosmo.make_train_chunk(args, network, optimizer, NUM_ACTIONS, HALF)

    return Algo(
        "rosmo",
        init,
        make_chunk,
        rosmo.make_act(network, NUM_ACTIONS, args.discount, greedy=True),
    )


def crr_algo():
    import crr

    args = crr.apply_env_defaults(crr.Args(batch_size=8, warmup_steps=2, lr_decay_steps=5, target_update_interval=3))
    policy_net = crr.networks.PolicyNetwork(num_actions=NUM_ACTIONS, representation_layers=(16, 8), prediction_layers=(8,))
    critic_net = crr.networks.QNetwork(
        num_actions=NUM_ACTIONS,
        num_bins=args.num_bins,
        representation_layers=(16, 8),
        dynamics_layers=(8, 16, 8),
        prediction_layers=(8,),
    )

    optimizer = optimizer_of(crr, args)

    def init(seeds):
        return crr.init_train_states(policy_net, critic_net, optimizer, jnp.zeros((1, OBS_DIM)), seeds)

    def make_chunk(state):
        return crr.make_train_chunk(args, policy_net, critic_net, optimizer, NUM_ACTIONS, HALF)

    return Algo(
        "crr",
        init,
        make_chunk,
        crr.make_act(policy_net, greedy=True),
    )


def bc_algo():
    import bc

    args = bc.apply_env_defaults(bc.Args(batch_size=8, warmup_steps=2, lr_decay_steps=5))
    network = bc.networks.PolicyNetwork(num_actions=NUM_ACTIONS, representation_layers=(16, 8), prediction_layers=(8,))

    optimizer = optimizer_of(bc, args)

    def init(seeds):
        return bc.init_train_states(network, optimizer, jnp.zeros((1, OBS_DIM)), seeds)

    def make_chunk(state):
        return bc.make_train_chunk(args, network, optimizer, NUM_ACTIONS, HALF)

    return Algo("bc", init, make_chunk, bc.make_act(network, greedy=True))


# Each script is imported by its builder, so one script that fails to import fails only its own tests.
BUILDERS = {"rosmo": rosmo_algo, "crr": crr_algo, "bc": bc_algo}


@pytest.fixture(scope="module")
def store():
    return catch_sized_store()


@pytest.fixture(scope="module")
def algos():
    """Each algorithm built once per module (its chunk compiles once per seed count)."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = BUILDERS[name]()
        return cache[name]

    return get


def train(algo, state, store, chunks, with_metrics=False):
    """`chunks` dispatches of HALF updates from a host copy of `state` (the chunk donates its input); the
    trained state on the host. With `with_metrics`, also the last dispatch's metrics (means over its updates,
    per seed)."""
    state = jax.device_get(state)
    for _ in range(chunks):
        state, metrics = algo.chunk(state, store)
        assert bool(np.all(metrics["finite"]))
    return jax.device_get((state, metrics)) if with_metrics else jax.device_get(state)


def other_values(state):
    """`state` on the host with every leaf changed (x + 1; booleans negated): a template none of whose
    leaves equals the state's."""
    return jax.tree.map(lambda x: ~x if x.dtype == bool else x + np.ones((), x.dtype), jax.device_get(state))


def leaves_with_paths(state):
    return [
        (jax.tree_util.keystr(path), np.asarray(x)) for path, x in jax.tree_util.tree_leaves_with_path(jax.device_get(state))
    ]


def assert_states_equal(got, want):
    got, want = leaves_with_paths(got), leaves_with_paths(want)
    assert [p for p, _ in got] == [p for p, _ in want]
    for (path, a), (_, b) in zip(got, want):
        assert a.dtype == b.dtype and a.shape == b.shape, path
        np.testing.assert_array_equal(a, b, err_msg=path)


@pytest.mark.parametrize("name", ["rosmo", "crr", "bc"])
def test_training_resumed_from_a_checkpoint_equals_training_straight(name, algos, store, tmp_path: Path):
    algo = algos(name)
    start = algo.init((3, 4))
    straight = train(algo, start, store, 2)

    half = train(algo, start, store, 1)
    path = tmp_path / "checkpoint.msgpack"
    save_checkpoint(path, jax.device_get(half), {"algo": name, "step": HALF})
    template = other_values(half)  # every leaf differs from the saved one: each must come from the file
    restored, meta = load_checkpoint(path, template, {"algo": name})
    assert meta["step"] == HALF
    assert_states_equal(restored, half)
    resumed = train(algo, restored, store, 1)
    assert_states_equal(resumed, straight)

    # Not vacuous: the second half moved the parameters, advanced the key and counted the updates,
    # and (with a target network) refreshed the target from the online network.
    np.testing.assert_array_equal(np.asarray(straight.step), [2 * HALF, 2 * HALF])
    assert not np.array_equal(np.asarray(straight.key), np.asarray(half.key))
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(straight.params), jax.tree.leaves(half.params)))
    if hasattr(straight, "target_params"):
        assert not all(
            np.array_equal(a, b) for a, b in zip(jax.tree.leaves(straight.target_params), jax.tree.leaves(half.target_params))
        )


def recording(act, log):
    """`act` that appends every batch of actions it returns to `log` (as numpy)."""

    def wrapped(params, observation, keys):
        actions = act(params, observation, keys)
        log.append(np.asarray(actions))
        return actions

    return wrapped


def evaluate_greedy(algo, params, seeds, num_episodes=4):
    """Mean catch return per seed [S] and the actions taken at each evaluation step [steps, S, E]."""
    log = []
    evaluate = make_evaluator("catch", recording(algo.act, log), seeds, num_episodes)
    return evaluate(params, jax.random.PRNGKey(seeds[0])), np.stack(log)


@pytest.mark.parametrize("name", ["rosmo", "crr"])
def test_seed_of_a_vmapped_run_trains_and_evaluates_like_a_one_seed_run(name, algos, store):
    algo = algos(name)
    both, metrics_both = train(algo, algo.init((3, 4)), store, 1, with_metrics=True)
    alone, metrics_alone = train(algo, algo.init((4,)), store, 1, with_metrics=True)

    assert int(both.step[1]) == int(alone.step[0]) == HALF
    np.testing.assert_array_equal(np.asarray(both.key[1]), np.asarray(alone.key[0]))  # the same batches were drawn
    for a, b in zip(jax.tree.leaves(both.params), jax.tree.leaves(alone.params)):
        # Equal up to float reassociation under vmap (Adam amplifies it for near-zero gradients).
        np.testing.assert_allclose(a[1], b[0], atol=1e-3 * float(np.abs(b[0]).max()) + 1e-7)
    np.testing.assert_allclose(metrics_both["loss"][1], metrics_alone["loss"][0], rtol=1e-5)
    assert not all(np.allclose(a[0], a[1]) for a in jax.tree.leaves(both.params))  # the two seeds differ
    # The target network (copied every 3 updates) was refreshed at update 3 and lags the online one by one update.
    initial = algo.init((3, 4))
    assert all(
        not np.array_equal(t, t0) for t, t0 in zip(jax.tree.leaves(both.target_params), jax.tree.leaves(initial.params))
    )
    assert not any(np.array_equal(t, p) for t, p in zip(jax.tree.leaves(both.target_params), jax.tree.leaves(both.params)))

    returns_both, actions_both = evaluate_greedy(algo, both.params, [3, 4])
    returns_alone, actions_alone = evaluate_greedy(algo, alone.params, [4])
    # Catch episodes all last 9 steps: the step-by-step greedy actions of seed 4 are the same.
    assert actions_both.shape == (9, 2, 4) and actions_alone.shape == (9, 1, 4)
    np.testing.assert_array_equal(actions_both[:, 1], actions_alone[:, 0])
    assert returns_both[1] == returns_alone[0]
    assert set(np.unique(returns_both * 4)) <= {-4, -2, 0, 2, 4}  # a mean of 4 episodes of +-1


def test_a_sampling_agent_of_a_multi_seed_run_evaluates_as_a_one_seed_run():
    # A policy that samples uniformly from its key (no parameters): seed 4's returns must not depend on whether
    # seeds 3 and 5 are evaluated beside it, nor on its position in the batch.
    from common.evaluation import make_evaluator

    @jax.jit
    def act(params, observation, keys):  # [S, E, D], keys [S] -> [S, E]
        return jax.vmap(lambda k, o: jax.random.randint(k, o.shape[:1], 0, 3))(keys, observation)

    key = jax.random.fold_in(jax.random.PRNGKey(1_000_003), 100)
    alone = make_evaluator("catch", act, [4], num_episodes=4)(None, key)
    together = make_evaluator("catch", act, [3, 4, 5], num_episodes=4)(None, key)
    assert together[1] == alone[0]
    # The sampled returns really depend on the seed's key chain (else the check above would be vacuous).
    others = make_evaluator("catch", act, [6, 7, 8, 9], num_episodes=4)(None, key)
    assert len({alone[0], *others.tolist()}) > 1

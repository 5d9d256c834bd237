"""MuZero Unplugged (mzu.py) and MZU-Q (mzu_q.py): the search on a model worked out by hand, MZU-Q's policy target,
end-to-end runs, one-line errors. The assembled losses, gradients, target network and optimiser: tests/test_mzu_loss.py."""

import json
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scripts import SMALL, one_line_error, run_script, run_scripts

import mzu
import mzu_q


def h_inverse(y, eps=1e-3):
    """The raw scalar x with h(x) = sign(x)(sqrt(|x| + 1) - 1) + eps x = y (y >= 0): u = sqrt(x + 1) solves
    eps u^2 + u - (y + 1 + eps) = 0."""
    u = (-1.0 + np.sqrt(1.0 + 4.0 * eps * (y + 1.0 + eps))) / (2.0 * eps)
    return u * u - 1.0


PRIOR = np.array([0.4, 0.35, 0.25])  # the same prior at every node: a fixed order of first visits
R, V = h_inverse(1.0), h_inverse(2.0)  # reward into state e2 and value of e2 (2.988 and 7.952); 0 elsewhere


def dense(kernel, bias=None):
    """The parameters of a flax Dense layer: `kernel` [in, out], `bias` [out] (zeros by default)."""
    return {
        "kernel": jnp.asarray(kernel, jnp.float32),
        "bias": jnp.asarray(np.zeros(kernel.shape[1]) if bias is None else bias, jnp.float32),
    }


def one_hot_model(num_bins=11):
    """A model whose search can be worked out by hand: state = observation (3 dims), g(s, a) = e_a whatever s,
    f(s) has the prior PRIOR everywhere, value V at e2 and 0 elsewhere, reward R into e2 and 0 elsewhere.

    Values and rewards are single spikes of the categorical heads: one bin at h(x) gets logit 60, the others 0.
    """
    network = mzu.networks.MuZeroNetwork(
        num_actions=3, num_bins=num_bins, representation_layers=(3,), dynamics_layers=(3,), prediction_layers=(3,)
    )
    centre = (num_bins - 1) // 2  # the bin of h = 0
    value_kernel, reward_kernel = np.zeros((3, num_bins)), np.zeros((3, num_bins))
    value_kernel[2, centre + 2] = 60.0  # f(e2) value: the bin h = 2
    reward_kernel[2, centre + 1] = 60.0  # f(e2) reward: the bin h = 1

    params = {
        "params": {
            "representation_net": {"Dense_0": dense(np.eye(3))},  # s = o
            "dynamics_net": {"Dense_0": dense(np.concatenate([np.zeros((3, 3)), np.eye(3)]))},  # [s, one-hot a] -> e_a
            "prediction_trunk": {"Dense_0": dense(np.eye(3))},  # relu(s)
            "policy_head": dense(np.zeros((3, 3)), np.log(PRIOR)),
            "value_head": dense(value_kernel),
            "reward_head": dense(reward_kernel),
        }
    }
    shapes = jax.eval_shape(network.init, jax.random.PRNGKey(0), jnp.zeros((1, 3)), jnp.zeros((1,), jnp.int32))
    assert jax.tree.map(lambda s: s.shape, shapes) == jax.tree.map(jnp.shape, params)
    return network, params


def test_search_of_a_hand_worked_model_gives_the_visits_q_and_root_value_worked_out_by_hand():
    """Five simulations, no root noise, gamma = 0.5, on roots o = 0 (value 0) and o = e2 (value V).

    pUCT (Eq. 2) with min-max normalised Q: while every visited Q is 0 the prior decides, so simulations 1-3 try
    actions 0, 1, 2 in turn (scores 0.4 > 0.35 > 0.25 times the same factor, halved once an action is visited).
    Action 2 then has Q = R + gamma V > 0 (normalised to 1, the others to 0) and takes simulations 4 and 5, which
    expand actions 0 and then 1 below e2 (reward 0, value 0). So the root's visits are (1, 1, 3); below action 2 the
    node's value is the mean of V, 0, 0, so Q(a=2) = R + gamma V / 3; the root's value is the mean of its own value
    and the five returns 0, 0, R + gamma V, R, R. (mzu_q.py's copy of the search is held to the same search through
    its loss in tests/test_mzu_loss.py.)
    """
    script = mzu
    network, params = one_hot_model()
    g = 0.5
    args = script.apply_env_defaults(script.Args(num_bins=11, num_simulations=5, discount=g))
    e2 = np.array([0.0, 0.0, 1.0])
    observation = jnp.asarray(np.array([[np.zeros(3), e2, np.zeros(3)], [e2, e2, np.zeros(3)]]), jnp.float32)  # [2, 3, 3]
    search_fn = jax.jit(
        lambda p, o, k: script.mcts(network, p, o, 2, k, **script.search_settings(args), dirichlet_fraction=0.0)
    )
    search = search_fn.lower(params, observation, jax.random.PRNGKey(0)).compile(
        compiler_options={"xla_backend_optimization_level": 0}
    )(params, observation, jax.random.PRNGKey(0))

    root_value_of_o = np.where(observation[..., 2] > 0, V, 0.0)  # [2, 3]
    expected_root_value = (root_value_of_o + 0 + 0 + (R + g * V) + R + R) / 6
    np.testing.assert_allclose(search.visit_counts, np.broadcast_to([1.0, 1.0, 3.0], (2, 3, 3)))
    np.testing.assert_allclose(search.action_weights, np.broadcast_to([0.2, 0.2, 0.6], (2, 3, 3)), rtol=1e-6)
    # (float32 decoding of a uniform categorical gives 0 to within 1e-4)
    np.testing.assert_allclose(search.qvalues, np.broadcast_to([0.0, 0.0, R + g * V / 3], (2, 3, 3)), atol=2e-4)
    np.testing.assert_allclose(search.root_value, expected_root_value, atol=2e-4)
    np.testing.assert_allclose(search.prior_logits, np.broadcast_to(np.log(PRIOR), (2, 3, 3)), rtol=1e-6)
    np.testing.assert_allclose(np.sqrt([R + 1, V + 1]) - 1 + 1e-3 * np.array([R, V]), [1.0, 2.0], rtol=1e-9)  # h(R), h(V)


def test_mzu_q_policy_target_is_prior_times_exp_q_over_tau_with_unvisited_actions_at_the_root_value():
    prior = np.array([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]])
    qvalues = np.array([[0.4, 0.0, -0.1], [0.2, 0.5, 0.1]])  # mctx reports Q = 0 for the unvisited action 1 of row 0
    visits = np.array([[3.0, 0.0, 1.0], [1.0, 2.0, 1.0]])
    root_value = np.array([0.25, 0.3])
    tau = 0.1
    completed = np.array([[0.4, 0.25, -0.1], [0.2, 0.5, 0.1]])
    unnormalised = prior * np.exp(completed / tau)
    expected = unnormalised / unnormalised.sum(-1, keepdims=True)
    target = mzu_q.mzu_q_policy_target(
        jnp.log(jnp.asarray(prior)) - 3.0, jnp.asarray(qvalues), jnp.asarray(visits), jnp.asarray(root_value), tau
    )
    np.testing.assert_allclose(target, expected, rtol=1e-5)
    # Row 0 by hand: 0.5 e^4 = 27.29908, 0.3 e^2.5 = 3.65475, 0.2 e^-1 = 0.07358; Z = 31.02740.
    np.testing.assert_allclose(target[0], [0.879838, 0.117791, 0.002371], atol=2e-6)
    # Left at mctx's Q = 0, the unvisited action would get less mass than with its completed value.
    raw = prior[0] * np.exp(qvalues[0] / tau)
    assert float(target[0, 1]) > raw[1] / raw.sum()


@pytest.fixture(scope="module")
def search_runs(catch_data, tmp_path_factory):
    """mzu.py and mzu_q.py each trained on two seeds with the SMALL budget, side by side: {script: (cwd, output)}."""
    cwds = {script: tmp_path_factory.mktemp(script) for script in ("mzu", "mzu_q")}
    flags = ["--data-dir", str(catch_data), "--num-seeds", "2", *SMALL]
    outs = run_scripts(*[(flags, cwd, f"{script}.py") for script, cwd in cwds.items()])
    return {script: (cwd, out) for (script, cwd), out in zip(cwds.items(), outs)}


@pytest.mark.e2e
@pytest.mark.parametrize("script", ["mzu", "mzu_q"])
def test_script_trains_and_evaluates_two_seeds_end_to_end(script, search_runs):
    cwd, out = search_runs[script]
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = (cwd / "runs").iterdir()
    assert run_dir.name.startswith(f"catch__{script}__0__")
    results = json.loads((run_dir / "results.json").read_text())
    assert results["algo"] == script and results["status"] == "finished"
    assert results["seeds"] == [0, 1] and results["total_steps"] == 300
    assert len(results["final_returns"]) == 2 and results["final_returns"] == results["eval_history"]["returns"][-1]
    # Catch pays +1 or -1 per episode: the mean of 3 evaluation episodes is -1, -1/3, 1/3 or 1.
    for r in results["final_returns"]:
        assert round(3 * r) in (-3, -1, 1, 3) and abs(3 * r - round(3 * r)) < 1e-9, r
    assert results["eval_history"]["steps"] == [150, 300]
    # Measured over the training dispatches, a part of the wall-clock time: at least the overall rate.
    assert results["updates_per_s"] >= results["total_steps"] / results["wall_clock_s"]
    assert "final mean return" in out.stdout


@pytest.mark.parametrize(
    "script, flags, message",
    [
        ("mzu.py", ["--num-simulations", "0"], "--num-simulations must be at least 1, got 0"),
        ("mzu_q.py", ["--temperature", "0"], "--temperature must be positive, got 0.0"),
    ],
)
def test_bad_search_flags_give_a_one_line_error(tmp_path, script, flags, message):
    line = one_line_error(run_script(flags, tmp_path, script=script))
    assert message in line


def flat_model(reward_bin: Optional[int], num_bins=11):
    """A model that does not read its input: every state is e0, with value V (the bin h = 2), the reward of the
    bin h = `reward_bin` (uniform logits, decoded as 0, where `reward_bin` is None) after every action, and the
    same prior everywhere, its logit for action 1 larger by 0.01 than the others'."""
    network = mzu.networks.MuZeroNetwork(
        num_actions=4, num_bins=num_bins, representation_layers=(3,), dynamics_layers=(3,), prediction_layers=(3,)
    )
    centre = (num_bins - 1) // 2
    value_kernel, reward_kernel = np.zeros((3, num_bins)), np.zeros((3, num_bins))
    value_kernel[0, centre + 2] = 60.0
    if reward_bin is not None:
        reward_kernel[0, centre + reward_bin] = 60.0
    dynamics = np.zeros((7, 3))
    dynamics[0, 0] = 1.0  # [s, one-hot a] -> s: e0 stays e0 whatever the action

    params = {
        "params": {
            "representation_net": {"Dense_0": dense(np.eye(3))},
            "dynamics_net": {"Dense_0": dense(dynamics)},
            "prediction_trunk": {"Dense_0": dense(np.eye(3))},
            "policy_head": dense(np.zeros((3, 4)), np.array([0.0, 0.01, 0.0, 0.0])),
            "value_head": dense(value_kernel),
            "reward_head": dense(reward_kernel),
        }
    }
    return network, params


@pytest.mark.parametrize("reward_bin, visits", [(1, [1, 17, 1, 1]), (None, [5, 5, 5, 5])])
def test_search_on_a_model_blind_to_the_state_gives_the_visits_to_the_largest_prior_when_q_exceeds_the_value(
    reward_bin, visits
):
    """docs/atari.md (the study's MZU runs): where r + gamma v(s') > v(s) for every action, min-max normalised Q
    scores the first child visited 1 and the unvisited 0, so 17 of 20 simulations go to the action whose prior logit
    is larger by 0.01, every action's one-step Q being the same; where r + gamma v(s') < v(s) (reward 0) the visits
    follow the prior (near uniform)."""
    network, params = flat_model(reward_bin)
    args = mzu.apply_env_defaults(mzu.Args(num_bins=11, num_simulations=20, discount=0.997))
    observation = jnp.asarray([[1.0, 0.0, 0.0]], jnp.float32)  # one root, state e0
    search = jax.jit(lambda p, o, k: mzu.mcts(network, p, o, 1, k, **mzu.search_settings(args), dirichlet_fraction=0.0))(
        params, observation, jax.random.PRNGKey(0)
    )
    np.testing.assert_allclose(search.visit_counts[0], visits)
    if reward_bin is not None:  # each action's one-step Q is R + gamma V (action 1's grows with its deeper paths)
        np.testing.assert_allclose(np.asarray(search.qvalues[0])[[0, 2, 3]], R + 0.997 * V, rtol=1e-4)


def test_repeated_search_collapses_the_prior_of_a_blind_model_only_when_q_exceeds_the_value():
    from benchmark.search_collapse import prior_entropies

    collapsing, prior = prior_entropies(0.0155, 0.7125, 0.5, copies=4, roots=64, simulations=20, discount=0.997, seed=0)
    assert collapsing[0] > collapsing[1] > collapsing[2] > collapsing[3] and prior.argmax() == 1  # the lead's action
    steady, prior = prior_entropies(0.0, 0.7125, 0.5, copies=4, roots=64, simulations=20, discount=0.997, seed=0)
    assert max(steady) - min(steady) < 0.05 and steady[-1] > 1.3  # the visits follow the prior itself

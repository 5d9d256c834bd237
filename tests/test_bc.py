"""Behaviour cloning: its loss on hand-made input, its acting rule, and bc.py run as a user runs it."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scripts import one_line_error, run_script

import bc


def test_bc_loss_is_minus_mean_log_prob_of_the_data_actions():
    probs = np.array([[0.5, 0.25, 0.25], [0.1, 0.6, 0.3]])
    logits = jnp.log(jnp.asarray(probs)) + jnp.array([[3.0], [-2.0]])  # logits up to a per-row shift
    loss = bc.bc_loss(logits, jnp.array([0, 2]))
    np.testing.assert_allclose(loss, -(np.log(0.5) + np.log(0.3)) / 2, rtol=1e-6)
    np.testing.assert_allclose(loss, (0.693147 + 1.203973) / 2, rtol=1e-5)


def test_bc_loss_gradient_moves_probability_towards_the_data_action():
    logits = jnp.zeros((2, 4))
    action = jnp.array([1, 3])
    grad = jax.grad(bc.bc_loss)(logits, action)
    # d/dlogits of -mean log softmax = (softmax - one_hot) / B = (0.25 - 1[a]) / 2.
    expected = (np.full((2, 4), 0.25) - np.eye(4)[[1, 3]]) / 2
    np.testing.assert_allclose(grad, expected, rtol=1e-6)


def test_act_takes_each_seeds_argmax_or_samples_from_its_policy():
    network = bc.networks.PolicyNetwork(num_actions=3, representation_layers=(8,), prediction_layers=(4,))
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    uniform_params = jax.jit(jax.vmap(lambda k: network.init(k, jnp.zeros((1, 5)))))(keys)  # two seeds
    # The zero-initialised output layer's bias alone sets the logits: seed 0 prefers action 2, seed 1 action 1.
    params = jax.tree.map(lambda x: x, uniform_params)  # new containers, same leaves
    params["params"]["Dense_0"]["bias"] = jnp.array([[0.0, 0.0, 9.0], [0.0, 9.0, 0.0]])
    observation = jnp.ones((2, 4, 5))
    greedy = bc.make_act(network, greedy=True)(params, observation, keys)
    np.testing.assert_array_equal(greedy, [[2, 2, 2, 2], [1, 1, 1, 1]])
    uniform = bc.make_act(network, greedy=False)(uniform_params, jnp.ones((2, 500, 5)), keys)
    assert uniform.shape == (2, 500) and set(np.unique(uniform)) == {0, 1, 2}


@pytest.mark.e2e
def test_bc_trains_two_seeds_on_catch_and_writes_results(bc_run):
    run_dir, out = bc_run  # bc.py --num-seeds 2 --save-model with SMALL's budget (tests/conftest.py)
    assert run_dir.name.startswith("catch__bc__0__")
    results = json.loads((run_dir / "results.json").read_text())
    assert results["algo"] == "bc" and results["env_id"] == "catch" and results["status"] == "finished"
    assert results["seeds"] == [0, 1] and results["total_steps"] == 300
    assert len(results["final_returns"]) == 2 and results["final_returns"] == results["eval_history"]["returns"][-1]
    # Catch pays +1 or -1 per episode: the mean of 3 evaluation episodes is -1, -1/3, 1/3 or 1.
    assert all(round(3 * r) in (-3, -1, 1, 3) and abs(3 * r - round(3 * r)) < 1e-9 for r in results["final_returns"])
    expected = [(r + 0.667) / (1.0 + 0.667) for r in results["final_returns"]]
    np.testing.assert_allclose(results["normalized_scores"], expected, rtol=1e-6)
    assert results["eval_history"]["steps"] == [150, 300]
    # Measured over the training dispatches, a part of the wall-clock time: at least the overall rate.
    assert results["updates_per_s"] >= results["total_steps"] / results["wall_clock_s"]
    assert "final mean return" in out.stdout


def test_bc_unknown_env_id_lists_the_valid_ones(tmp_path):
    line = one_line_error(run_script(["--env-id", "pong"], tmp_path, script="bc.py"))
    assert "unknown --env-id 'pong'" in line and "catch, cartpole, mountain_car" in line

"""ROSMO's targets and losses on hand-made input (paper Eq. 6, 8, 9-10, 11)."""

import jax
import jax.numpy as jnp
import numpy as np

import rosmo


def test_exact_policy_target_is_prior_times_exp_adv_normalised():
    prior = np.array([0.5, 0.3, 0.2])
    adv = np.array([0.1, -0.4, 1.2])
    unnormalised = prior * np.exp(adv)  # 0.552585, 0.201096, 0.664023; Z = 1.417704
    expected = unnormalised / unnormalised.sum()
    target = rosmo.exact_policy_target(jnp.log(jnp.asarray(prior)) + 7.0, jnp.asarray(adv))  # logits up to a shift
    np.testing.assert_allclose(target, expected, rtol=1e-5)
    np.testing.assert_allclose(expected, [0.389775, 0.141846, 0.468380], atol=1e-5)


def test_exact_policy_target_with_zero_advantage_is_the_prior():
    logits = jnp.array([[1.0, 2.0, -1.0, 0.0]])
    np.testing.assert_allclose(rosmo.exact_policy_target(logits, jnp.zeros((1, 4))), jax.nn.softmax(logits), rtol=1e-6)


def test_sampled_target_leave_one_out_weights_by_hand():
    # N = 2 samples, actions 0 and 2, adv 0 and log 3: Z_0 = (1 + 3) / 2 = 2, Z_1 = (1 + 1) / 2 = 1.
    # weights: exp(0) / 2 = 0.5 and 3 / 1 = 3; target[a] = (1/N) sum_i w_i 1[a_i = a].
    target = rosmo.sampled_policy_target(jnp.array([0, 2]), jnp.array([0.0, np.log(3.0)]), 3)
    np.testing.assert_allclose(target, [0.25, 0.0, 1.5], rtol=1e-6)


def test_sampled_target_stays_finite_for_extreme_advantages():
    target = rosmo.sampled_policy_target(jnp.array([0, 1, 1]), jnp.array([80.0, 0.0, -50.0]), 2)
    assert np.all(np.isfinite(target)) and target[0] > 1e30 and target[1] < 1e-30
    capped = rosmo.sampled_policy_target(jnp.array([0, 1, 1]), jnp.array([500.0, 0.0, -50.0]), 2)
    assert np.all(np.isfinite(capped))


def test_sampled_estimator_expectation_matches_exact_target():
    prior_logits = jnp.log(jnp.array([0.1, 0.2, 0.3, 0.4]))
    adv = jnp.array([0.8, -0.5, 0.3, -0.2])
    exact = rosmo.exact_policy_target(prior_logits, adv)
    n, reps = 64, 4000
    actions = jax.random.categorical(jax.random.PRNGKey(0), prior_logits, shape=(reps, n))
    estimates = rosmo.sampled_policy_target(actions, adv[actions], 4)  # [reps, A]
    mean, sem = estimates.mean(0), estimates.std(0) / np.sqrt(reps)
    # The leave-one-out estimator is consistent: with N = 64 its bias is far below 1%.
    np.testing.assert_allclose(mean, exact, atol=float(4 * sem.max()) + 5e-3)
    # With a single sample the estimator is exactly a draw weighted by N exp(adv)/(1) = exp(adv):
    # its expectation is prior * exp(adv), unnormalised.
    one = rosmo.sampled_policy_target(actions[:, :1], adv[actions[:, :1]], 4).mean(0)
    np.testing.assert_allclose(one, jax.nn.softmax(prior_logits) * jnp.exp(adv), atol=0.03)


def test_n_step_value_target_by_hand():
    g = 0.5
    # One window of L = 6, n = 2, 4 targets. Steps 0-2 are transitions, step 2 -> 3 terminates,
    # step 3 is the terminal state (absorbing), 4-5 lie past the end (repeat step 3).
    reward = jnp.array([[1.0, 2.0, 4.0, 0.0, 0.0, 0.0]])
    discount = jnp.array([[1.0, 1.0, 0.0, 1.0, 1.0, 1.0]])
    has_action = jnp.array([[True, True, True, False, False, False]])
    absorbing = jnp.array([[False, False, False, True, True, True]])
    v = jnp.array([[10.0, 20.0, 30.0, 40.0, 40.0, 40.0]])
    z = rosmo.n_step_value_target(reward, discount, has_action, absorbing, v, g, 2, 4)
    expected = [
        1 + g * 2 + g * g * 30,  # bootstrap from v(s_2)
        2 + g * 4 + 0.0,  # s_3 is terminal: cut by the discount 0 of the step 2 -> 3 transition
        4 + 0.0,  # same
        0.0,  # absorbing position
    ]
    np.testing.assert_allclose(z[0], expected, rtol=1e-6)


def test_n_step_value_target_bootstraps_from_the_last_state_of_a_truncated_episode():
    g = 0.5
    # Truncated after 2 transitions: the final state s_2 is real (not absorbing); steps 3-4 lie
    # past the end and repeat s_2's observation, so their bootstrap value is v(s_2) = 8.
    reward = jnp.array([[1.0, 2.0, 0.0, 0.0, 0.0]])
    discount = jnp.ones((1, 5))
    has_action = jnp.array([[True, True, False, False, False]])
    absorbing = jnp.array([[False, False, False, True, True]])
    v = jnp.array([[3.0, 5.0, 8.0, 8.0, 8.0]])
    z = rosmo.n_step_value_target(reward, discount, has_action, absorbing, v, g, 3, 2)
    # m = min(n, steps left) transitions of reward, then gamma^m v(s_2).
    np.testing.assert_allclose(z[0], [1 + g * 2 + g * g * 8, 2 + g * 8], rtol=1e-6)
    z1 = rosmo.n_step_value_target(reward, discount, has_action, absorbing, v, g, 1, 4)
    np.testing.assert_allclose(z1[0], [1 + g * 5, 2 + g * 8, 8.0, 0.0], rtol=1e-6)


def test_behavior_loss_filters_by_positive_advantage_and_mask():
    logits = jnp.log(jnp.array([[[0.5, 0.5], [0.25, 0.75], [0.9, 0.1]]]))  # [B=1, K+1=3, A=2]
    action = jnp.array([[0, 1, 1]])
    adv = jnp.array([[0.3, 0.2, 5.0]])
    mask = jnp.array([[True, True, False]])  # the last position has no real action
    loss = rosmo.behavior_loss(logits, action, adv, mask)
    expected = (-np.log(0.5) - np.log(0.75) + 0.0) / 3
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    no_positive = rosmo.behavior_loss(logits, action, -adv, jnp.ones((1, 3), bool))
    assert float(no_positive) == 0.0


def test_scale_gradient_scales_only_the_gradient():
    def f(x):
        return jnp.sum(rosmo.scale_gradient(x, 0.5) ** 2)

    x = jnp.array([1.0, -2.0])
    np.testing.assert_allclose(f(x), 5.0)
    np.testing.assert_allclose(jax.grad(f)(x), 0.5 * 2 * x)


def test_data_advantage_reads_the_next_observations_heads_with_no_value_past_a_terminal_state():
    # Eq. 11 read at o_{t+1}: r + gamma d v' - v; the third step's next observation lies past the episode's end.
    next_reward = jnp.array([0.5, -1.0, 1.0])
    next_value = jnp.array([2.0, 4.0, 8.0])
    next_absorbing = jnp.array([False, False, True])
    discount = jnp.array([1.0, 0.0, 1.0])  # the second transition ends the episode: d_t = 0
    value = jnp.array([1.0, 1.0, 1.0])
    adv = rosmo.data_advantage(next_reward, next_value, next_absorbing, discount, value, 0.5)
    np.testing.assert_allclose(adv, [0.5 + 0.5 * 2.0 - 1.0, -1.0 - 1.0, 1.0 - 1.0])

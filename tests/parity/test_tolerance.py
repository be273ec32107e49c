"""The tolerance policy itself: the rule, the checks' order, and the failure messages."""

import math

import numpy as np
import pytest

from parity.tolerance import (EPS32, FD_NOISE, assert_close, assert_gradient_close, compare, numerical_gradient,
                              rel_error, tolerance)


def test_rule_scales_with_magnitude_and_sqrt_of_reduction():
    atol1, rtol = tolerance(np.float32)
    assert atol1 == pytest.approx(4 * EPS32) and rtol == pytest.approx(32 * EPS32)
    assert tolerance(np.float32, scale=10.0)[0] == pytest.approx(10 * atol1)
    assert tolerance(np.float32, scale=0.01)[0] == pytest.approx(atol1)  # never below the unit scale
    assert tolerance(np.float32, reduction=100)[0] == pytest.approx(10 * atol1)
    assert tolerance(np.float64)[0] < 1e-14


def test_checks_shape_then_dtype_then_values():
    a = np.zeros((2, 3), np.float32)
    with pytest.raises(AssertionError, match=r"\[conv\] shape mismatch: mine \(2, 3\) vs Keras \(3, 2\)"):
        assert_close(a, np.zeros((3, 2), np.float64), label="conv")
    with pytest.raises(AssertionError, match=r"\[conv\] dtype mismatch: mine float32 vs Keras float64"):
        assert_close(a, np.zeros((2, 3), np.float64), label="conv")


def test_failure_names_worst_element_and_tolerance():
    desired = np.ones((2, 3), np.float32)
    actual = desired.copy()
    actual[1, 2] += 1e-3
    actual[0, 0] += 1e-4
    with pytest.raises(AssertionError, match=r"\[dense\] values differ: worst at index \(1, 2\): "
                                             r"mine 1\.00100004.* vs Keras 1\.0; max abs err 1\.000e-03.*"
                                             r"33\.333% of 6 elements beyond atol=.*reduction=4"):
        assert_close(actual, desired, label="dense", reduction=4)


def test_agreement_within_a_few_ulps_passes_and_reports_stats():
    rng = np.random.default_rng(0)
    desired = rng.normal(size=(50,)).astype(np.float32)
    actual = np.nextafter(desired, np.float32(np.inf))
    stats = assert_close(actual, desired, label="ulp")
    assert stats["passed"] and 0 < stats["eps_units"] <= 2 and stats["frac_beyond"] == 0


def test_explicit_atol_is_honoured_near_zero():
    assert not compare(np.float32([1e-6]), np.float32([0.0]), atol=1e-9, rtol=0)["passed"]
    assert compare(np.float32([1e-6]), np.float32([0.0]), atol=1e-5, rtol=0)["passed"]


def test_non_finite_values_only_agree_when_identical():
    assert compare(np.float32([np.inf, 1]), np.float32([np.inf, 1]))["passed"]
    assert not compare(np.float32([np.nan]), np.float32([1.0]))["passed"]
    assert not compare(np.float32([-np.inf]), np.float32([np.inf]))["passed"]


def test_numerical_gradient_and_rel_error():
    x = np.array([0.3, -1.2, 2.0])
    num = numerical_gradient(lambda: np.sin(x), x, np.ones(3))
    assert rel_error(num, np.cos(x)) < 1e-9
    assert assert_gradient_close(np.cos(x), num, label="sin") < 1e-9
    with pytest.raises(AssertionError, match=r"\[sin\] gradient rel_error .* > 1\.0e-06; worst at index \(1,\)"):
        assert_gradient_close(np.cos(x) + np.array([0, 1e-3, 0]), num, label="sin")


def test_gradients_below_finite_difference_resolution_are_held_to_the_noise():
    tiny = np.array([3e-8, -2e-8])
    assert_gradient_close(tiny, tiny + FD_NOISE / 2, label="d_h0")  # rel_error ~4e-4, yet within noise
    with pytest.raises(AssertionError, match=r"\[d_h0\] gradient below finite-difference resolution"):
        assert_gradient_close(tiny, tiny + 10 * FD_NOISE, label="d_h0")
    assert FD_NOISE == pytest.approx(np.finfo(np.float64).eps / 1e-5) and math.isfinite(FD_NOISE)

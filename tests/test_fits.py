"""Shape fits across log-scale (metrics/fits.py) on hand-computed and simulated curves."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import expit

from metrics.fits import SHAPES, fit_shapes, information_criteria, predict

T = np.linspace(3.0, 6.0, 10)  # log10 sizes: 1k … 1M parameters, 10 models


def sigmoid(t, lo=0.05, hi=0.9, k=4.0, t0=4.3):
    return lo + (hi - lo) * expit(k * (t - t0))


def by_shape(fits):
    assert [f.shape for f in fits] == list(SHAPES)
    return {f.shape: f for f in fits}


def test_linear_matches_hand_computation():
    # OLS by hand on t = 0..3, y = 1, 3, 2, 5 (σ = 1): t̄ = 1.5, ȳ = 2.75, Sxx = 5, Sxy = 5.5 → b = 1.1, a = 1.1;
    # residuals −0.1, 0.8, −1.3, 0.6 → χ² = 0.01 + 0.64 + 1.69 + 0.36 = 2.7; AIC = 2.7 + 4; BIC = 2.7 + 2 ln 4
    lin = by_shape(fit_shapes([0.0, 1.0, 2.0, 3.0], [1.0, 3.0, 2.0, 5.0], [1.0] * 4))["linear"]
    assert lin.params == pytest.approx({"a": 1.1, "b": 1.1})
    assert (lin.chi2, lin.dof, lin.n_params) == (pytest.approx(2.7), 2, 2)
    assert lin.aic == pytest.approx(6.7) and lin.bic == pytest.approx(2.7 + 2 * math.log(4))
    assert lin.location is None and lin.location_low is None


def test_weighted_linear_matches_normal_equations():
    t = np.array([3.0, 3.5, 4.2, 5.0, 5.9])
    y = np.array([0.12, 0.18, 0.22, 0.41, 0.47])
    se = np.array([0.01, 0.03, 0.02, 0.05, 0.02])
    X = np.stack([np.ones_like(t), t], axis=1)
    W = np.diag(1.0 / se**2)
    a, b = np.linalg.solve(X.T @ W @ X, X.T @ W @ y)  # (X'WX) β = X'Wy
    chi2 = float(np.sum(((y - a - b * t) / se) ** 2))
    lin = by_shape(fit_shapes(t, y, se))["linear"]
    assert lin.params["a"] == pytest.approx(a, rel=1e-9) and lin.params["b"] == pytest.approx(b, rel=1e-9)
    assert lin.chi2 == pytest.approx(chi2, rel=1e-9)


def test_information_weights_by_hand():
    # χ² = 3, 1, 0.5 with k = 2, 4, 4 on n = 10: AIC = 7, 9, 8.5 → Δ = 0, 2, 1.5;
    # exp(−Δ/2) = 1, 0.367879, 0.472367; sum 1.840246 → 0.543406, 0.199908, 0.256686.
    # BIC = 3 + 2 ln 10 = 7.605170, 1 + 4 ln 10 = 10.210340, 9.710340 → Δ/2 = 0, ln 10 − 1, ln 10 − 1.25;
    # exp(−Δ/2) = 1, e/10 = 0.271828, e^1.25/10 = 0.349034; sum 1.620863 → 0.616955, 0.167706, 0.215339.
    ic = information_criteria(np.array([3.0, 1.0, 0.5]), np.array([2, 4, 4]), 10)
    assert ic["aic"] == pytest.approx([7.0, 9.0, 8.5])
    assert ic["bic"] == pytest.approx([7.605170, 10.210340, 9.710340], abs=1e-6)
    assert ic["aic_weight"] == pytest.approx([0.543406, 0.199908, 0.256686], abs=1e-6)
    assert ic["bic_weight"] == pytest.approx([0.616955, 0.167706, 0.215339], abs=1e-6)


def test_pure_logistic_recovered_and_preferred():
    fits = by_shape(fit_shapes(T, sigmoid(T), np.full(10, 0.01)))
    lg = fits["logistic"]
    assert lg.params == pytest.approx({"lo": 0.05, "hi": 0.9, "k": 4.0, "t0": 4.3}, abs=1e-4)
    assert lg.location == pytest.approx(4.3, abs=1e-4)
    assert lg.location_low < 4.3 < lg.location_high and not lg.location_censored
    assert lg.chi2 == pytest.approx(0.0, abs=1e-6)
    assert max(fits.values(), key=lambda f: f.aic_weight) is lg
    assert max(fits.values(), key=lambda f: f.bic_weight) is lg
    assert predict(lg, T) == pytest.approx(sigmoid(T), abs=1e-6)


def test_exact_line_prefers_linear_by_the_penalty_alone():
    # both the line and the change point (c = 0) fit exactly, χ² = 0: AIC weights differ by exp(−(8 − 4)/2),
    # BIC weights by exp(−(4 − 2) ln 10 / 2) = 1/10
    fits = by_shape(fit_shapes(T, 0.1 + 0.2 * T, np.full(10, 0.02)))
    lin, cp = fits["linear"], fits["changepoint"]
    assert lin.chi2 == pytest.approx(0.0, abs=1e-9) and cp.chi2 == pytest.approx(0.0, abs=1e-9)
    assert lin.aic_weight / cp.aic_weight == pytest.approx(math.exp(2.0))
    assert lin.bic_weight / cp.bic_weight == pytest.approx(10.0)
    assert max(fits.values(), key=lambda f: f.aic_weight) is lin


def test_noisy_line_prefers_linear():
    rng = np.random.default_rng(0)
    y = 0.1 + 0.2 * T + rng.normal(0.0, 0.02, T.size)
    fits = by_shape(fit_shapes(T, y, np.full(10, 0.02)))
    assert max(fits.values(), key=lambda f: f.aic_weight).shape == "linear"
    assert max(fits.values(), key=lambda f: f.bic_weight).shape == "linear"
    assert sum(f.aic_weight for f in fits.values()) == pytest.approx(1.0)


def test_hinge_change_point_recovered():
    t = np.linspace(3.0, 6.0, 12)
    rng = np.random.default_rng(0)
    y = 0.1 + 0.02 * (t - 3.0) + 0.3 * np.maximum(0.0, t - 4.6) + rng.normal(0.0, 0.01, t.size)
    cp = by_shape(fit_shapes(t, y, np.full(t.size, 0.01)))["changepoint"]
    assert cp.location == pytest.approx(4.6, abs=0.1)
    assert cp.location_low <= 4.6 <= cp.location_high and not cp.location_censored
    assert cp.params["c"] == pytest.approx(0.3, abs=0.05)
    # noise-free: the hinge is exact
    exact = by_shape(fit_shapes(t, 1.0 + 0.5 * np.maximum(0.0, t - 4.6), np.full(t.size, 0.01)))["changepoint"]
    assert exact.params == pytest.approx({"a": 1.0, "b": 0.0, "c": 0.5, "tau": 4.6}, abs=1e-6)


def test_falling_curve_gives_the_same_location():
    rng = np.random.default_rng(3)
    y = sigmoid(T) + rng.normal(0.0, 0.02, T.size)
    se = np.full(10, 0.02)
    up, down = by_shape(fit_shapes(T, y, se)), by_shape(fit_shapes(T, -y, se))
    for shape in ("logistic", "changepoint"):
        for field in ("location", "location_low", "location_high", "chi2"):
            assert getattr(down[shape], field) == pytest.approx(getattr(up[shape], field), abs=1e-6)
    assert down["logistic"].params["hi"] == pytest.approx(-up["logistic"].params["hi"], abs=1e-6)


def test_fewer_than_min_models_are_null_with_reason():
    fits = fit_shapes([3.0, 4.0, 5.0], [0.1, 0.2, 0.9], [0.01] * 3)
    assert [f.status for f in fits] == ["needs at least 4 models, found 3"] * 3
    assert all(f.params is None and math.isnan(f.chi2) and f.location is None for f in fits)
    assert np.isnan(predict(fits[1], [3.0, 4.0])).all()
    five = fit_shapes(T[:5], T[:5], [0.01] * 5, min_models=6)
    assert {f.status for f in five} == {"needs at least 6 models, found 5"}
    # exactly four: the 4-parameter shapes may interpolate (dof 0), dispersion then stays 1
    four = by_shape(fit_shapes([3.0, 4.0, 5.0, 6.0], [0.1, 0.12, 0.7, 0.8], [0.01] * 4))
    assert four["logistic"].status == "ok" and four["logistic"].dof == 0 and four["logistic"].dispersion == 1.0


def test_zero_standard_errors_use_the_floor():
    # exact match on 400 items: the small models score 0 on every item, so their bootstrap se is 0
    y = np.array([0.0, 0.0, 0.0, 0.0025, 0.01, 0.05, 0.3, 0.7, 0.85, 0.9])
    se = np.sqrt(y * (1 - y) / 400)
    fits = fit_shapes(T, y, se, se_floor=1 / 400)
    assert all(f.status == "ok" and math.isfinite(f.chi2) and math.isfinite(f.aic_weight) for f in fits)
    assert all(math.isfinite(f.location_low) and math.isfinite(f.location_high) for f in fits[1:])
    # the floor is σ: with se = 0 everywhere the linear χ² is the floor-weighted sum of squares
    flat = by_shape(fit_shapes([3.0, 4.0, 5.0, 6.0], [0.0, 0.0, 0.0, 0.01], [0.0] * 4, se_floor=0.01))["linear"]
    # OLS by hand: t̄ = 4.5, ȳ = 0.0025, Sxy = 0.015, Sxx = 5 → b = 0.003, a = −0.011; fitted −0.002, 0.001,
    # 0.004, 0.007; residuals 0.002, −0.001, −0.004, 0.003 → χ² = 30e-6 / 0.01² = 0.3
    assert flat.params == pytest.approx({"a": -0.011, "b": 0.003}) and flat.chi2 == pytest.approx(0.3)


def test_bad_input_is_refused_with_one_line():
    with pytest.raises(ValueError, match="se is 0 for 2 models and se_floor is 0"):
        fit_shapes(T[:4], [0.0, 0.0, 0.5, 1.0], [0.0, 0.0, 0.1, 0.1])
    with pytest.raises(ValueError, match="t must be strictly increasing"):
        fit_shapes([3.0, 3.0, 4.0, 5.0], [0.0] * 4, [0.1] * 4)
    with pytest.raises(ValueError, match="one value per model, found 4, 3, 4"):
        fit_shapes([3.0, 4.0, 5.0, 6.0], [0.0] * 3, [0.1] * 4)
    with pytest.raises(ValueError, match="y has 1 non-finite"):
        fit_shapes([3.0, 4.0, 5.0, 6.0], [0.0, math.nan, 0.1, 0.2], [0.1] * 4)
    with pytest.raises(ValueError, match="min_models must be an int >= 4"):
        fit_shapes(T, T, np.ones(10), min_models=3)


def test_midpoint_interval_covers_the_truth_in_simulation():
    # 200 noisy sigmoids with known σ: the 95% profile interval should cover t0 = 4.3 close to 95% of the time
    rng = np.random.default_rng(20240601)
    se = np.full(T.size, 0.03)
    covered = 0
    for _ in range(200):
        fit = fit_shapes(T, sigmoid(T) + rng.normal(0.0, 0.03, T.size), se)[1]
        covered += fit.location_low <= 4.3 <= fit.location_high
    assert covered >= 170

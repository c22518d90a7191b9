"""Three shapes fitted to one scaling curve across log-scale: linear, logistic and a one-break change point.

Input is one curve: `t` (n,), log10 of the scale axis (e.g. non-embedding parameters), strictly increasing; `y` (n,),
each model's mean of a metric, raw (rising or falling: every shape fits both orientations); `se` (n,), each mean's
standard error (from the item bootstrap). Each point gets σ_i = max(se_i, se_floor): a mean whose bootstrap
standard error is 0 (exact match 0.000 on every item) would otherwise get infinite weight; the caller passes
the metric's granularity (1/n_items for a mean of binary items) as `se_floor`. With zeros in `se` and no
floor the call is refused.

Shapes, fitted by weighted least squares with known σ_i, i.e. maximum likelihood for y_i ~ N(f(t_i), σ_i²), so
−2 log L = χ² + const with χ² = Σ ((y_i − f(t_i)) / σ_i)² and the same constant for every shape:

- ``linear``       y = a + b·t                                                 (2 parameters: a, b)
- ``logistic``     y = lo + (hi − lo) / (1 + exp(−k (t − t0)))                  (4 parameters: lo, hi, k, t0)
- ``changepoint``  y = a + b·t + c·max(0, t − tau)                              (4 parameters: a, b, c, tau)

``lo`` and ``hi`` are the logistic's asymptotes for small and large models (hi < lo on a falling curve; k > 0);
``k`` is per unit of t (per decade). The change point is a continuous "broken stick" (Hudson 1966; Hinkley
1970): slope b before tau, b + c after. The location of the jump is the logistic's midpoint t0 or the change
point tau. Allowed ranges, outside of which a location is not identified by the data:

- t0 in [t_1, t_n]; k·span in [ln 9, 2·ln 999 / g], span = t_n − t_1 and g = the smallest gap between
  neighbouring t divided by span. At the lower bound the logistic's 10%–90% rise takes twice the fitted range
  (flatter than that it is a straight line over the data, with its floor and ceiling far outside it); at the
  upper bound it rises from 0.1% to 99.9% within the smallest gap (steeper is a step the data cannot tell
  apart). lo and hi are free.
- tau in [t_2, t_{n−1}], so that each segment holds at least two models.

Fitting. For fixed (k, t0) the logistic is linear in (lo, hi), and for fixed tau the change point is linear in
(a, b, c); the remaining coefficients are profiled out in closed form (weighted least squares by projection,
Frisch–Waugh–Lovell), vectorised over a grid: 201 midpoints × 64 log-spaced slopes, and 401 change points. The
best grid point is then refined with scipy: `scipy.optimize.least_squares` (bounded, analytic Jacobian) for the
logistic, `scipy.optimize.minimize_scalar` (bounded) on the best grid cell for the change point. Internally t is
mapped to u = (t − t_1) / span in [0, 1]; parameters are reported in t units.

Model choice. For each shape k parameters (tau and t0 count), AIC = χ² + 2k and BIC = χ² + k·ln n; across the
three shapes Akaike and BIC weights w_i = exp(−Δ_i / 2) / Σ_j exp(−Δ_j / 2), Δ_i = IC_i − min_j IC_j (Burnham &
Anderson 2002, Model Selection and Multimodel Inference, §2.9; Schwarz 1978). With four models the logistic and
the change point have as many parameters as points and may interpolate (χ² = 0, dof = 0); that is allowed, the
penalty 2k (or k·ln n) is what stands against them. AICc is not used: it is undefined for k ≥ n − 1.

Location interval. A profile-likelihood interval (Venzon & Moolgavkar 1988, Applied Statistics 37:87–94): the set
of locations whose profiled χ²(loc) = min over the other parameters is at most χ²_min + q·s, with q the
`confidence` quantile of χ² with 1 degree of freedom (3.84 for 95%) and s = max(1, χ²_min / dof) a quasi-likelihood
dispersion that widens the interval when the shape misfits or the standard errors are too small (the scaling
`scipy.optimize.curve_fit` applies with absolute_sigma=False; s = 1 when dof = 0). The reported bounds are the
outermost crossings (the hull, if the set has gaps), interpolated linearly between grid points. A bound that
reaches the edge of the allowed range is that edge and `location_censored` is True. The change point's profile is
not differentiable at the data points, so the χ² calibration is only approximate there (Hinkley 1970; Hudson 1966
on the broken-stick likelihood); treat its interval as approximate. On a flat curve the location is not
identified: its interval is the whole allowed range, censored.

Public API:

- ``fit_shapes(t, y, se, *, se_floor=0.0, min_models=4, confidence=0.95) -> list[ShapeFit]``: always three fits,
  in the order of ``SHAPES``; with fewer than `min_models` points each is null (NaN numbers, None parameters) with
  the reason in ``status``.
- ``predict(fit, t) -> np.ndarray``: the fitted curve at t (NaN for a null fit), for figures.
- ``information_criteria(chi2, n_params, n) -> dict``: AIC, BIC and their weights across shapes.

>>> fits = fit_shapes([0.0, 1.0, 2.0, 3.0], [1.0, 3.0, 2.0, 5.0], [1.0, 1.0, 1.0, 1.0])
>>> lin = fits[0]
>>> lin.shape, round(lin.params["a"], 6), round(lin.params["b"], 6), round(lin.chi2, 6), lin.dof
('linear', 1.1, 1.1, 2.7, 2)
>>> round(lin.aic, 6), round(lin.bic, 6)
(6.7, 5.472589)
>>> [f.status for f in fit_shapes([0.0, 1.0, 2.0], [1.0, 3.0, 2.0], [1.0, 1.0, 1.0])]
['needs at least 4 models, found 3', 'needs at least 4 models, found 3', 'needs at least 4 models, found 3']
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy.optimize import least_squares, minimize_scalar
from scipy.special import expit
from scipy.stats import chi2 as chi2_dist

from metrics.curves import Curves

SHAPES = ("linear", "logistic", "changepoint")
PARAMS = {"linear": ("a", "b"), "logistic": ("lo", "hi", "k", "t0"), "changepoint": ("a", "b", "c", "tau")}
#: Fewer models than this and every fit is null: the 4-parameter shapes need at least 4 points.
MIN_MODELS = 4
DEFAULT_CONFIDENCE = 0.95
#: Grid sizes of the profile searches (midpoints × slopes for the logistic; change points).
LOGISTIC_T0_GRID = 201
LOGISTIC_K_GRID = 64
CHANGEPOINT_GRID = 401
#: Slope bounds in u units (module docstring): 10%–90% rise over twice the range; 0.1%–99.9% within the smallest gap.
K_MIN_U = math.log(9.0)
K_MAX_GAP = 2.0 * math.log(999.0)
_GOLDEN_STEPS = 25


@dataclass(frozen=True)
class ShapeFit:
    """One shape fitted to one curve; numbers are NaN and `params` None when `status` is not "ok".

    location, location_low, location_high are in t units (log10 of the scale axis); None for `linear`.
    `dispersion` is s = max(1, χ²/dof) used to widen the location interval; `signature` records the settings.
    """

    shape: str
    params: dict[str, float] | None
    chi2: float
    n_params: int
    n_models: int
    dof: int
    aic: float
    bic: float
    aic_weight: float
    bic_weight: float
    location: float | None
    location_low: float | None
    location_high: float | None
    location_censored: bool
    dispersion: float
    status: str
    signature: str


def signature(se_floor: float, min_models: int, confidence: float) -> str:
    """Settings that change a fit's numbers, e.g. 'fits:wls|se_floor:0.0025|min_models:4|conf:0.95|grid:201x64,401'."""
    return (
        f"fits:wls|se_floor:{se_floor:g}|min_models:{min_models}|conf:{confidence:g}"
        f"|grid:{LOGISTIC_T0_GRID}x{LOGISTIC_K_GRID},{CHANGEPOINT_GRID}"
    )


def information_criteria(chi2: np.ndarray, n_params: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """AIC = χ² + 2k, BIC = χ² + k ln n, and their weights exp(−Δ/2) / Σ exp(−Δ/2) (Burnham & Anderson 2002).

    >>> ic = information_criteria(np.array([3.0, 1.0]), np.array([2, 4]), 10)
    >>> ic["aic"].tolist(), ic["aic_weight"].round(4).tolist()
    ([7.0, 9.0], [0.7311, 0.2689])
    """
    chi2 = np.asarray(chi2, dtype=np.float64)
    k = np.asarray(n_params, dtype=np.float64)
    out = {"aic": chi2 + 2.0 * k, "bic": chi2 + k * math.log(n)}
    for name in ("aic", "bic"):
        rel = np.exp(-0.5 * (out[name] - out[name].min()))
        out[f"{name}_weight"] = rel / rel.sum()
    return out


def predict(fit: ShapeFit, t) -> np.ndarray:
    """The fitted curve of `fit` at `t` (log10 scale); all NaN for a null fit.

    >>> linear = fit_shapes([0.0, 1.0, 2.0, 3.0], [1.0, 3.0, 2.0, 5.0], [1.0] * 4)[0]
    >>> predict(linear, [0.0, 3.0]).round(6).tolist()
    [1.1, 4.4]
    """
    return predict_shape(fit.shape, fit.params, t)


def predict_shape(shape: str, p: dict[str, float] | None, t) -> np.ndarray:
    """A shape's curve at `t` from its parameters (as in `ShapeFit.params` or the fits table's JSON `params`)."""
    t = np.asarray(t, dtype=np.float64)
    if p is None:
        return np.full(t.shape, np.nan)
    if shape == "linear":
        return p["a"] + p["b"] * t
    if shape == "logistic":
        return p["lo"] + (p["hi"] - p["lo"]) * expit(p["k"] * (t - p["t0"]))
    if shape == "changepoint":
        return p["a"] + p["b"] * t + p["c"] * np.maximum(0.0, t - p["tau"])
    raise ValueError(f"predict: unknown shape {shape!r}; expected one of {SHAPES}")


def fit_shapes(
    t, y, se, *, se_floor: float = 0.0, min_models: int = MIN_MODELS, confidence: float = DEFAULT_CONFIDENCE
) -> list[ShapeFit]:
    """Fit the three shapes of `SHAPES` to one curve (module docstring); always returns three fits in that order."""
    t, y, sigma = _check(t, y, se, se_floor, min_models, confidence)
    n = t.size
    sig = signature(se_floor, min_models, confidence)
    if n < min_models:
        reason = f"needs at least {min_models} models, found {n}"
        return [_null(shape, len(PARAMS[shape]), n, reason, sig) for shape in SHAPES]

    span = t[-1] - t[0]
    u = (t - t[0]) / span  # (n,) in [0, 1]
    q = float(chi2_dist.ppf(confidence, 1))
    raw = [_linear(u, y, sigma), _logistic(u, y, sigma), _changepoint(u, y, sigma)]
    ic = information_criteria(np.array([r["chi2"] for r in raw]), np.array([len(PARAMS[s]) for s in SHAPES]), n)

    fits = []
    for i, (shape, r) in enumerate(zip(SHAPES, raw)):
        n_params = len(PARAMS[shape])
        dof = n - n_params
        dispersion = max(1.0, r["chi2"] / dof) if dof > 0 else 1.0
        params = _to_t_units(shape, r["params"], t[0], span)
        loc = low = high = None
        censored = False
        if "profile" in r:
            grid, profile, lo_edge, hi_edge = r["profile"]
            lo_u, hi_u, censored = _interval(grid, profile, r["loc"], r["chi2"], q * dispersion, lo_edge, hi_edge)
            loc, low, high = (float(t[0] + v * span) for v in (r["loc"], lo_u, hi_u))
        fits.append(ShapeFit(
            shape=shape, params=params, chi2=float(r["chi2"]), n_params=n_params, n_models=n, dof=dof,
            aic=float(ic["aic"][i]), bic=float(ic["bic"][i]), aic_weight=float(ic["aic_weight"][i]),
            bic_weight=float(ic["bic_weight"][i]), location=loc, location_low=low, location_high=high,
            location_censored=censored, dispersion=dispersion, status="ok", signature=sig,
        ))
    return fits


# ---------------------------------------------------------------------------------------------------- checks


def _check(t, y, se, se_floor, min_models, confidence):
    arrays = {}
    for name, v in (("t", t), ("y", y), ("se", se)):
        a = np.asarray(v, dtype=np.float64)
        if a.ndim != 1:
            raise ValueError(f"fit_shapes: {name} must be one-dimensional, found shape {a.shape}")
        bad = int((~np.isfinite(a)).sum())
        if bad:
            raise ValueError(f"fit_shapes: {name} has {bad} non-finite values; drop those models before fitting")
        arrays[name] = a
    t, y, se = arrays["t"], arrays["y"], arrays["se"]
    if not (t.size == y.size == se.size):
        raise ValueError(f"fit_shapes: t, y and se must have one value per model, found {t.size}, {y.size}, {se.size}")
    if np.any(np.diff(t) <= 0):
        raise ValueError("fit_shapes: t must be strictly increasing (sort models by size; merge equal sizes)")
    if not isinstance(min_models, int) or min_models < MIN_MODELS:
        raise ValueError(f"fit_shapes: min_models must be an int >= {MIN_MODELS}, found {min_models!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"fit_shapes: confidence must be in (0, 1), found {confidence!r}")
    if not (math.isfinite(se_floor) and se_floor >= 0.0):
        raise ValueError(f"fit_shapes: se_floor must be a finite number >= 0, found {se_floor!r}")
    if np.any(se < 0):
        raise ValueError("fit_shapes: se has negative standard errors")
    sigma = np.maximum(se, se_floor)
    zeros = int((sigma == 0).sum())
    if zeros:
        raise ValueError(f"fit_shapes: se is 0 for {zeros} models and se_floor is 0; pass se_floor > 0 (e.g. 1/n_items)")
    return t, y, sigma


def _null(shape, n_params, n, reason, sig) -> ShapeFit:
    nan = math.nan
    return ShapeFit(shape, None, nan, n_params, n, n - n_params, nan, nan, nan, nan, None, None, None, False, nan,
                    reason, sig)


def _to_t_units(shape, p, t1, span) -> dict[str, float]:
    """Parameters fitted in u = (t − t1)/span → t units."""
    if shape == "logistic":
        out = {"lo": p["lo"], "hi": p["hi"], "k": p["k"] / span, "t0": t1 + p["t0"] * span}
    else:
        b = p["b"] / span
        out = {"a": p["a"] - b * t1, "b": b}
        if shape == "changepoint":
            out |= {"c": p["c"] / span, "tau": t1 + p["tau"] * span}
    return {name: float(v) for name, v in out.items()}


# ---------------------------------------------------------------------------------------------------- fits in u


def _linear(u, y, sigma) -> dict:
    X = np.stack([np.ones_like(u), u], axis=1) / sigma[:, None]  # (n, 2) whitened design
    coef, *_ = np.linalg.lstsq(X, y / sigma, rcond=None)
    chi2 = float(np.sum((X @ coef - y / sigma) ** 2))
    return {"params": {"a": coef[0], "b": coef[1]}, "chi2": chi2}


def _logistic_profile(u, yc, w_root, wsum, u0, k):
    """χ² profiled over (lo, hi) for each (u0, k): broadcasting shapes (..., 1) → (...).

    By projection: with s = expit(k (u − u0)) and weighted centring, χ² = |ỹ|² − (s̃·ỹ)² / |s̃|², where
    ỹ = (y − ȳ_w)/σ and s̃ = (s − s̄_w)/σ (the constant column projected out).
    """
    s = expit(k[..., None] * (u - u0[..., None]))  # (..., n)
    s_c = (s - (s * w_root**2).sum(-1, keepdims=True) / wsum) * w_root  # (..., n) whitened, centred
    ss = (s_c * s_c).sum(-1)  # (...)
    sy = (s_c * yc).sum(-1)  # (...)
    with np.errstate(invalid="ignore", divide="ignore"):
        explained = np.where(ss > 0, sy * sy / ss, 0.0)
    return np.maximum((yc * yc).sum() - explained, 0.0)


def _logistic(u, y, sigma) -> dict:
    w_root = 1.0 / sigma  # (n,)
    wsum = float((w_root**2).sum())
    yc = (y - (y * w_root**2).sum() / wsum) * w_root  # (n,) whitened, centred
    gap = float(np.diff(u).min())
    logk_lo, logk_hi = math.log(K_MIN_U), math.log(max(K_MAX_GAP / gap, K_MIN_U * 1.0001))

    u0_grid = np.linspace(0.0, 1.0, LOGISTIC_T0_GRID)  # (G0,)
    logk_grid = np.linspace(logk_lo, logk_hi, LOGISTIC_K_GRID)  # (Gk,)
    surface = _logistic_profile(u, yc, w_root, wsum, u0_grid[:, None], np.exp(logk_grid)[None, :])  # (G0, Gk)

    # profile over k at each midpoint: golden-section search in log k inside the best grid cell pair
    j = surface.argmin(axis=1)  # (G0,)
    a = logk_grid[np.maximum(j - 1, 0)]  # (G0,)
    b = logk_grid[np.minimum(j + 1, LOGISTIC_K_GRID - 1)]  # (G0,)
    invphi = (math.sqrt(5.0) - 1.0) / 2.0

    def f(logk):
        return _logistic_profile(u, yc, w_root, wsum, u0_grid, np.exp(logk))

    c, d = b - invphi * (b - a), a + invphi * (b - a)  # (G0,) inner points, c < d
    fc, fd = f(c), f(d)
    for _ in range(_GOLDEN_STEPS):
        left = fc < fd  # (G0,) True: the minimum lies in [a, d], else in [c, b]
        a, b = np.where(left, a, c), np.where(left, d, b)
        new = np.where(left, b - invphi * (b - a), a + invphi * (b - a))  # the one new inner point
        f_new = f(new)
        c, fc, d, fd = (np.where(left, new, d), np.where(left, f_new, fd),
                        np.where(left, c, new), np.where(left, fc, f_new))
    logk_best = np.where(fc < fd, c, d)  # (G0,)
    profile = np.minimum(np.minimum(fc, fd), surface.min(axis=1))  # (G0,) χ² profiled over (lo, hi, k)

    # refine the best midpoint with all four parameters free within bounds
    g = int(profile.argmin())
    x0_u0, x0_logk = u0_grid[g], logk_best[g]
    lo0, hi0 = _logistic_coefs(u, y, sigma, x0_u0, math.exp(x0_logk))
    eps = 1e-9
    x0 = np.array([lo0, hi0, min(max(x0_logk, logk_lo + eps), logk_hi - eps), min(max(x0_u0, eps), 1.0 - eps)])

    def residuals(x):
        s = expit(math.exp(x[2]) * (u - x[3]))
        return (x[0] + (x[1] - x[0]) * s - y) / sigma

    def jacobian(x):
        k = math.exp(x[2])
        s = expit(k * (u - x[3]))
        ds = (x[1] - x[0]) * s * (1.0 - s)  # (n,)
        return np.stack([1.0 - s, s, ds * k * (u - x[3]), -ds * k], axis=1) / sigma[:, None]  # (n, 4)

    sol = least_squares(residuals, x0, jac=jacobian, bounds=([-np.inf, -np.inf, logk_lo, 0.0],
                                                             [np.inf, np.inf, logk_hi, 1.0]), x_scale="jac")
    best_u0, best_logk, best_chi2 = x0_u0, x0_logk, float(profile[g])
    refined = float(_logistic_profile(u, yc, w_root, wsum, np.array(sol.x[3]), np.array(math.exp(sol.x[2]))))
    if refined < best_chi2:
        best_u0, best_logk, best_chi2 = float(sol.x[3]), float(sol.x[2]), refined
    lo, hi = _logistic_coefs(u, y, sigma, best_u0, math.exp(best_logk))
    return {"params": {"lo": lo, "hi": hi, "k": math.exp(best_logk), "t0": best_u0}, "chi2": best_chi2,
            "loc": best_u0, "profile": (u0_grid, profile, 0.0, 1.0)}


def _logistic_coefs(u, y, sigma, u0, k):
    s = expit(k * (u - u0))
    X = np.stack([1.0 - s, s], axis=1) / sigma[:, None]  # (n, 2) whitened (lo, hi) design
    coef, *_ = np.linalg.lstsq(X, y / sigma, rcond=None)
    return float(coef[0]), float(coef[1])


def _changepoint(u, y, sigma) -> dict:
    w_root = 1.0 / sigma
    A = np.stack([w_root, u * w_root], axis=1)  # (n, 2) whitened (1, u)
    Q, _ = np.linalg.qr(A)  # (n, 2)
    y_w = y * w_root
    y_perp = y_w - Q @ (Q.T @ y_w)  # (n,) residual of the straight line
    base = float(y_perp @ y_perp)

    def profile(tau):  # tau (G,) → χ² (G,), the hinge column projected off (1, u)
        h = np.maximum(0.0, u - tau[:, None]) * w_root  # (G, n)
        h_perp = h - (h @ Q) @ Q.T  # (G, n)
        hh = (h_perp * h_perp).sum(-1)
        hy = h_perp @ y_perp
        with np.errstate(invalid="ignore", divide="ignore"):
            explained = np.where(hh > 0, hy * hy / hh, 0.0)
        return np.maximum(base - explained, 0.0)

    lo_edge, hi_edge = float(u[1]), float(u[-2])
    grid = np.linspace(lo_edge, hi_edge, CHANGEPOINT_GRID)  # (G,)
    prof = profile(grid)  # (G,)
    g = int(prof.argmin())
    best_tau, best_chi2 = float(grid[g]), float(prof[g])
    if hi_edge > lo_edge:
        lo_b, hi_b = grid[max(g - 1, 0)], grid[min(g + 1, CHANGEPOINT_GRID - 1)]
        sol = minimize_scalar(lambda v: float(profile(np.array([v]))[0]), bounds=(lo_b, hi_b), method="bounded",
                              options={"xatol": 1e-10})
        if sol.fun < best_chi2:
            best_tau, best_chi2 = float(sol.x), float(sol.fun)
    X = np.stack([np.ones_like(u), u, np.maximum(0.0, u - best_tau)], axis=1) * w_root[:, None]  # (n, 3)
    coef, *_ = np.linalg.lstsq(X, y_w, rcond=None)
    return {"params": {"a": coef[0], "b": coef[1], "c": coef[2], "tau": best_tau}, "chi2": best_chi2,
            "loc": best_tau, "profile": (grid, prof, lo_edge, hi_edge)}


# ---------------------------------------------------------------------------------------------------- interval


def _interval(grid, profile, loc, chi2_min, width, lo_edge, hi_edge):
    """Hull of {x : profile(x) ≤ chi2_min + width}, crossings interpolated linearly; (low, high, censored).

    The refined optimum (loc, chi2_min) is inserted into the grid so the set is never empty.
    """
    i = int(np.searchsorted(grid, loc))
    x = np.insert(grid, i, loc)  # (G+1,)
    f = np.insert(profile, i, chi2_min)  # (G+1,)
    threshold = min(chi2_min, float(f.min())) + width
    inside = np.flatnonzero(f <= threshold)
    first, last = int(inside[0]), int(inside[-1])
    censored = False
    if first == 0:
        low, censored = lo_edge, True
    else:
        low = _cross(x[first - 1], f[first - 1], x[first], f[first], threshold)
    if last == x.size - 1:
        high, censored = hi_edge, True
    else:
        high = _cross(x[last], f[last], x[last + 1], f[last + 1], threshold)
    return min(low, loc), max(high, loc), censored


def _cross(x0, f0, x1, f1, level):
    """x where the segment (x0, f0)–(x1, f1) reaches `level` (f0, f1 on opposite sides)."""
    if f1 == f0:
        return float(x0)
    return float(x0 + (level - f0) * (x1 - x0) / (f1 - f0))


# ----------------------------------------------------------------------------------------------------- the table

#: fits.parquet: one row per (task, metric, shape). Locations are on the scale axis (10**t), not in log10 units.
FITS: dict[str, pl.DataType] = {
    "task": pl.String,
    "formulation": pl.String,
    "metric": pl.String,
    "kind": pl.String,
    "direction": pl.String,
    "shape": pl.String,
    "status": pl.String,  # "ok", or why there is no fit
    "n_models": pl.Int64,
    "params": pl.String,  # JSON {name: value}, t = log10 of the scale axis
    "chi2": pl.Float64,
    "n_params": pl.Int64,
    "dof": pl.Int64,
    "dispersion": pl.Float64,
    "aic": pl.Float64,
    "bic": pl.Float64,
    "aic_weight": pl.Float64,
    "bic_weight": pl.Float64,
    "best": pl.Boolean,  # the shape with the largest Akaike weight for this curve
    "location": pl.Float64,  # logistic midpoint or change point, in scale-axis units
    "location_low": pl.Float64,
    "location_high": pl.Float64,
    "location_censored": pl.Boolean,  # the interval reaches the edge of the allowed range: not identified there
    "x_axis": pl.String,
    "signature": pl.String,
}


def _scale(t: float | None) -> float | None:
    return None if t is None or not math.isfinite(t) else float(10.0**t)


def fit_table(curves: Sequence[Curves]) -> pl.DataFrame:
    """FITS rows for every metric of every whole-task `Curves`: the three shapes fitted to the model means with
    their bootstrap standard errors (std of the replicates), floored at the metric's granularity (the smallest step
    a mean of integer item scores can take) or, for continuous metrics, at 1e-9 of the curve's range."""
    rows = []
    for c in curves:
        if c.slice != "all":
            continue
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN replicates of an undefined mean
            se_all = np.nanstd(c.replicates, axis=1, ddof=1) if c.replicates.shape[1] > 1 else np.zeros_like(c.means)
        for m, name in enumerate(c.metrics):
            keep = np.isfinite(c.means[m]) & (c.x > 0)  # (n,) models on the curve
            y, se = c.means[m, keep], np.nan_to_num(se_all[m, keep])
            span = float(np.ptp(y)) if y.size else 0.0
            floor = float(c.granularity[m]) if c.granularity[m] > 0 else 1e-9 * (span or 1.0)
            base = {"task": c.task, "formulation": c.formulation, "metric": name, "kind": c.info[m].kind,
                    "direction": c.info[m].direction,
                    "x_axis": c.x_name}
            if keep.sum() < np.isfinite(c.means[m]).sum():
                reason = f"the scale axis {c.x_name!r} has values <= 0, so no log-scale fit"
                rows.extend({**base, "shape": shape, "status": reason, "n_models": int(keep.sum())} for shape in SHAPES)
                continue
            fits = fit_shapes(np.log10(c.x[keep]), y, se, se_floor=floor, confidence=c.bootstrap.confidence)
            best = int(np.nanargmax([f.aic_weight for f in fits])) if any(f.status == "ok" for f in fits) else -1
            for j, f in enumerate(fits):
                rows.append({
                    **base, "shape": f.shape, "status": f.status, "n_models": f.n_models,
                    "params": json.dumps(f.params, sort_keys=True) if f.params is not None else None,
                    "chi2": f.chi2, "n_params": f.n_params, "dof": f.dof, "dispersion": f.dispersion, "aic": f.aic,
                    "bic": f.bic, "aic_weight": f.aic_weight, "bic_weight": f.bic_weight, "best": j == best,
                    "location": _scale(f.location), "location_low": _scale(f.location_low),
                    "location_high": _scale(f.location_high),
                    "location_censored": f.location_censored if f.location is not None else None,
                    "signature": f.signature,
                })
    if not rows:
        return pl.DataFrame(schema=FITS)
    table = pl.DataFrame(rows, schema=FITS).with_columns(pl.col(pl.Float64).fill_nan(None))
    return table.sort("task", "formulation", "metric", "shape")

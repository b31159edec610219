"""Maximum-likelihood fitting of BG/NBD and Gamma-Gamma from per-customer arrays.

Pure numpy/scipy: the likelihoods are vectorised in log space over customers (identical
(x, t_x, T) rows are collapsed into weights first), and parameters are optimised on the log
scale so they stay positive. Reading files is :mod:`microseg.engine.tools.fit`'s job; scoring one
customer is :mod:`microseg.segments.predictive`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import betaln, digamma, gammaln, hyp2f1

from microseg.segments.dna_record import to_cents
from microseg.segments.predictive import _HIGH_SLACK, _LOW_SLACK, BgNbdParams, GammaGammaParams, PredictiveError
from microseg.segments.predictive import _expected_if_alive_quadrature as _quadrature

__all__ = [
    "FitError",
    "CustomerSummary",
    "BgNbdFit",
    "GammaGammaFit",
    "summarise",
    "bgnbd_log_likelihood",
    "gamma_gamma_log_likelihood",
    "fit_bgnbd",
    "fit_gamma_gamma",
    "p_alive_array",
    "expected_purchases_array",
    "expected_spend_array",
    "simulate_transactions",
    "MAX_AMOUNT",
]

MAX_AMOUNT = 1e12
"""The largest amount of one purchase, as for events (``schemas.events.Money``): its cents fit in int64."""

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


class FitError(PredictiveError):
    """The data cannot identify the model (too few customers or repeat buyers) or the optimiser failed."""


@dataclass(frozen=True, eq=False)
class CustomerSummary:
    """Per-customer calibration statistics in the model unit, plus holdout counts for checking the fit.

    ``customer`` holds the input codes of the customers with a calibration purchase; ``m_x`` is the
    mean amount of the repeat purchase days (0 where ``x == 0``); ``holdout`` counts purchase days
    after the calibration end, in a holdout period of ``holdout_length`` units.
    """

    customer: IntArray
    x: IntArray
    t_x: FloatArray
    T: FloatArray
    m_x: FloatArray
    holdout: IntArray
    holdout_length: float
    first_day: int
    calibration_end_day: int
    last_day: int
    purchase_days: int

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass(frozen=True, slots=True)
class BgNbdFit:
    params: BgNbdParams
    log_likelihood: float
    customers: int
    iterations: int


@dataclass(frozen=True, slots=True)
class GammaGammaFit:
    params: GammaGammaParams
    log_likelihood: float
    customers: int
    iterations: int


def _group_starts(*keys: NDArray[np.int64]) -> IntArray:
    n = keys[0].shape[0]
    change = np.zeros(n, dtype=bool)
    if n:
        change[0] = True
        for k in keys:
            change[1:] |= k[1:] != k[:-1]
    return np.flatnonzero(change)


def _cents(amount: FloatArray) -> IntArray:
    """Amounts as integer cents, rounded exactly as the DNA rounds them (``dna_record.to_cents``):
    ``amount * 100`` to the nearest, except the rare amounts within float error of a half cent."""
    scaled = amount * 100.0
    cents = np.rint(scaled)
    near_half = np.abs(np.abs(scaled - cents) - 0.5) <= np.abs(scaled) * 1e-15
    out = cents.astype(np.int64)
    for i in np.flatnonzero(near_half):
        out[i] = to_cents(float(amount[i]))
    return out


def summarise(
    customer: ArrayLike,
    day: ArrayLike,
    amount: ArrayLike,
    calibration_end: int | None = None,
    unit_days: float = 7.0,
) -> CustomerSummary:
    """Build (x, t_x, T, m_x) per customer from transactions; purchases on the same day are one purchase.

    ``customer`` are integer codes, ``day`` integer day numbers (e.g. ``date.toordinal()``),
    ``amount`` in currency units (at most ``MAX_AMOUNT``), ``calibration_end`` the last calibration
    day (inclusive; default the last day in the data). Customers whose first purchase is after the
    calibration end are left out. Money is summed in integer cents (each amount rounded half-even to
    the cent, as the DNA does) and ``m_x`` is one division of exact cents, as the scorer's.
    """
    c = np.asarray(customer, dtype=np.int64)
    d = np.asarray(day, dtype=np.int64)
    amt = np.asarray(amount, dtype=np.float64)
    if not (c.shape == d.shape == amt.shape) or c.ndim != 1:
        raise FitError("customer, day and amount must be 1-d arrays of the same length")
    if c.shape[0] == 0:
        raise FitError("no transactions to fit: the input has no valid purchase rows")
    if not np.all(np.isfinite(amt)) or np.any(amt < 0) or np.any(amt > MAX_AMOUNT):
        raise FitError(f"amounts must be finite numbers in [0, {MAX_AMOUNT:g}]")
    cents = _cents(amt)
    order = np.lexsort((d, c))
    c, d, cents = c[order], d[order], cents[order]
    starts = _group_starts(c, d)
    dc, dd, damt = c[starts], d[starts], np.add.reduceat(cents, starts)
    end = int(dd.max()) if calibration_end is None else int(calibration_end)
    first_day, last_day = int(dd.min()), int(dd.max())
    if end < first_day:
        raise FitError(f"the calibration end (day {end}) is before the first purchase (day {first_day})")
    cal = dd <= end
    holdout_counts = np.bincount(dc[~cal], minlength=int(c.max()) + 1)
    cc, cd, camt = dc[cal], dd[cal], damt[cal]
    cs = _group_starts(cc)
    counts = np.diff(np.append(cs, cc.shape[0]))
    first = cd[cs]
    last = cd[cs + counts - 1]
    total = np.add.reduceat(camt, cs)
    x = counts - 1
    m_x = np.where(x > 0, (total - camt[cs]) / (100.0 * np.maximum(x, 1)), 0.0)
    customers = cc[cs]
    return CustomerSummary(
        customer=customers,
        x=x.astype(np.int64),
        t_x=(last - first) / unit_days,
        T=(end - first) / unit_days,
        m_x=m_x,
        holdout=holdout_counts[customers].astype(np.int64),
        holdout_length=max(last_day - end, 0) / unit_days,
        first_day=first_day,
        calibration_end_day=end,
        last_day=last_day,
        purchase_days=int(cc.shape[0]),
    )


def bgnbd_log_likelihood(params: BgNbdParams, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:
    """Per-customer BG/NBD log-likelihood (Fader, Hardie & Lee 2005, eq. 7) in log space."""
    return _bgnbd_ll(params.r, params.alpha, params.a, params.b, *_as_float(x, t_x, T))


def _as_float(*arrays: ArrayLike) -> tuple[FloatArray, ...]:
    return tuple(np.asarray(a, dtype=np.float64) for a in arrays)


def _bgnbd_ll(r: float, alpha: float, a: float, b: float, x: FloatArray, t_x: FloatArray, T: FloatArray) -> FloatArray:
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = betaln(a, b + x) - betaln(a, b)
    a3 = -(r + x) * np.log(alpha + T)
    repeat = x > 0
    a4 = np.full_like(x, -np.inf)
    xr = x[repeat]
    a4[repeat] = np.log(a) - np.log(b + xr - 1.0) - (r + xr) * np.log(alpha + t_x[repeat])
    return a1 + a2 + np.logaddexp(a3, a4)


def gamma_gamma_log_likelihood(params: GammaGammaParams, x: ArrayLike, m_x: ArrayLike) -> FloatArray:
    """Per-customer Gamma-Gamma log-likelihood of the mean spend m_x over x purchases (x > 0, m_x > 0)."""
    return _gg_ll(params.p, params.q, params.v, *_as_float(x, m_x))


def _gg_ll(p: float, q: float, v: float, x: FloatArray, m: FloatArray) -> FloatArray:
    px = p * x
    return (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(v)
        + (px - 1.0) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(x * m + v)
    )


def _collapse(*columns: FloatArray) -> tuple[tuple[FloatArray, ...], FloatArray]:
    stacked = np.column_stack(columns)
    unique, weights = np.unique(stacked, axis=0, return_counts=True)
    return tuple(unique[:, i] for i in range(unique.shape[1])), weights.astype(np.float64)


def _lookup(values: FloatArray) -> tuple[FloatArray, IntArray]:
    """Distinct values and the index back: special functions then run on hundreds, not 100k, values."""
    unique, inverse = np.unique(values, return_inverse=True)
    return unique, inverse.reshape(-1)


def _wsum(w: FloatArray, v: FloatArray) -> float:
    """Weighted sum without BLAS: ``w @ v`` costs milliseconds when BLAS threads fight for busy cores."""
    return float(np.sum(w * v))


Objective = Callable[[NDArray[np.float64]], tuple[float, NDArray[np.float64]]]


def _bgnbd_objective(x: FloatArray, t_x: FloatArray, T: FloatArray, w: FloatArray) -> Objective:
    """Mean negative log-likelihood and its gradient in log-parameters, for L-BFGS-B."""
    ux, ix = _lookup(x)
    uT, iT = _lookup(T)
    ut, it = _lookup(t_x)
    total = w.sum()
    repeat = x > 0
    xm1 = np.where(repeat, x - 1.0, 0.0)

    def objective(theta: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        r, alpha, a, b = np.exp(theta)
        log_aT = np.log(alpha + uT)[iT]
        log_at = np.log(alpha + ut)[it]
        a1 = (gammaln(r + ux) - gammaln(r))[ix] + r * np.log(alpha)
        a2 = (betaln(a, b + ux) - betaln(a, b))[ix]
        a3 = -(r + x) * log_aT
        a4 = np.where(repeat, np.log(a) - np.log(b + xm1) - (r + x) * log_at, -np.inf)
        mix = np.logaddexp(a3, a4)
        ll = a1 + a2 + mix
        share = np.exp(a4 - mix)
        rest = 1.0 - share
        d_r = (digamma(r + ux) - digamma(r))[ix] + np.log(alpha) - rest * log_aT - share * log_at
        d_alpha = r / alpha - (r + x) * (rest * np.exp(-log_aT) + share * np.exp(-log_at))
        d_a = (digamma(a + b) - digamma(a + b + ux))[ix] + share / a
        d_b = (digamma(b + ux) - digamma(a + b + ux) - digamma(b) + digamma(a + b))[ix] - share / (b + xm1)
        grad = np.array([_wsum(w, d_r) * r, _wsum(w, d_alpha) * alpha, _wsum(w, d_a) * a, _wsum(w, d_b) * b])
        return -_wsum(w, ll) / total, -grad / total

    return objective


def _gg_objective(x: FloatArray, m: FloatArray, w: FloatArray) -> Objective:
    ux, ix = _lookup(x)
    log_m = np.log(m)
    log_x = np.log(x)
    total = w.sum()

    def objective(theta: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        p, q, v = np.exp(theta)
        px = p * x
        log_xmv = np.log(x * m + v)
        ll = (gammaln(p * ux + q) - gammaln(p * ux))[ix] - gammaln(q) + q * np.log(v) + (px - 1.0) * log_m + px * log_x - (px + q) * log_xmv
        psi_pxq = digamma(p * ux + q)[ix]
        d_p = x * (psi_pxq - digamma(p * ux)[ix] + log_m + log_x - log_xmv)
        d_q = psi_pxq - digamma(q) + np.log(v) - log_xmv
        d_v = q / v - (px + q) / (x * m + v)
        grad = np.array([_wsum(w, d_p) * p, _wsum(w, d_q) * q, _wsum(w, d_v) * v])
        return -_wsum(w, ll) / total, -grad / total

    return objective


def _maximise(objective: Objective, n_params: int, total: float, what: str) -> tuple[NDArray[np.float64], float, int]:
    from scipy.optimize import minimize  # deferred: a third of a second at every CLI start otherwise

    def safe(theta: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        with np.errstate(all="ignore"):
            value, grad = objective(theta)
        if not np.isfinite(value) or not np.all(np.isfinite(grad)):
            return 1e300, np.zeros_like(theta)
        return value, grad

    best = None
    for start in (0.0, -1.0, 1.0):
        res = minimize(safe, np.full(n_params, start), jac=True, method="L-BFGS-B", options={"ftol": 1e-15, "gtol": 1e-9, "maxiter": 5000})
        if best is None or res.fun < best.fun:
            best = res
        if best.fun < 1e299 and best.success:
            break
    assert best is not None
    if not np.isfinite(best.fun) or best.fun >= 1e299 or not np.all(np.isfinite(best.x)):
        raise FitError(f"the {what} fit did not converge ({best.message}); check that the data has enough repeat purchases")
    if np.any(np.abs(best.x) > 25):
        raise FitError(f"the {what} fit ran off to an extreme parameter ({np.exp(best.x)}); the data does not identify the model")
    return np.exp(best.x), float(-best.fun * total), int(best.nit)


def fit_bgnbd(x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> BgNbdFit:
    """Maximum-likelihood BG/NBD parameters (r, alpha, a, b); times in the model unit."""
    xf, txf, Tf = _as_float(x, t_x, T)
    if xf.shape[0] < 10 or not np.any(xf > 0):
        raise FitError(f"BG/NBD needs at least 10 customers and some repeat purchases, got {xf.shape[0]} customer{'' if xf.shape[0] == 1 else 's'}")
    if np.any(xf < 0) or np.any(txf < 0) or np.any(Tf < txf):
        raise FitError("BG/NBD needs x >= 0 and 0 <= t_x <= T for every customer")
    (ux, ut, uT), weights = _collapse(xf, txf, Tf)
    values, ll, nit = _maximise(_bgnbd_objective(ux, ut, uT, weights), 4, float(xf.shape[0]), "BG/NBD")
    params = BgNbdParams(*map(float, values))
    return BgNbdFit(params, ll, int(xf.shape[0]), nit)


def fit_gamma_gamma(x: ArrayLike, m_x: ArrayLike) -> GammaGammaFit:
    """Maximum-likelihood Gamma-Gamma parameters (p, q, v) from repeat buyers with a positive mean spend."""
    xf, mf = _as_float(x, m_x)
    keep = (xf > 0) & (mf > 0) & np.isfinite(mf)
    xf, mf = xf[keep], mf[keep]
    if xf.shape[0] < 10:
        raise FitError(f"Gamma-Gamma needs at least 10 repeat buyers with a positive spend, got {xf.shape[0]}")
    (ux, um), weights = _collapse(xf, mf)
    values, ll, nit = _maximise(_gg_objective(ux, um, weights), 3, float(xf.shape[0]), "Gamma-Gamma")
    try:
        params = GammaGammaParams(*map(float, values))
    except PredictiveError as exc:
        raise FitError(f"Gamma-Gamma fit is unusable: {exc}") from None
    return GammaGammaFit(params, ll, int(xf.shape[0]), nit)


def p_alive_array(bg: BgNbdParams, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:
    """Vectorised :func:`microseg.segments.predictive.p_alive`: 1 where x == 0, and never a
    floating-point error (it runs under ``numpy.errstate(all="raise")``): the log-odds are only
    formed where x > 0, and a P(alive) too small for a float is 0."""
    xf, txf, Tf = np.broadcast_arrays(*_as_float(x, t_x, T))
    out = np.ones(xf.shape, dtype=np.float64)
    repeat = xf > 0
    xr = xf[repeat]
    lo = np.log(bg.a) - np.log(bg.b + xr - 1.0) + (bg.r + xr) * (np.log(bg.alpha + Tf[repeat]) - np.log(bg.alpha + txf[repeat]))
    with np.errstate(under="ignore"):
        out[repeat] = np.exp(-np.logaddexp(0.0, lo))
    return out


def expected_purchases_array(bg: BgNbdParams, t: float, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> FloatArray:
    """Vectorised :func:`microseg.segments.predictive.expected_purchases`: the same Euler-transformed
    2F1, held to the same bounds, and the same quadrature for the customers where it fails."""
    xf, txf, Tf = np.broadcast_arrays(*_as_float(x, t_x, T))
    if t <= 0.0:
        return np.zeros(xf.shape, dtype=np.float64)
    a, b, r = bg.a, bg.b, bg.r
    s = r + xf
    with np.errstate(under="ignore"):  # a quantity too small for a float is 0, which is right
        u = t / (bg.alpha + Tf)
        high = s * u
        low = -np.expm1(-s * np.log1p(u))
    with np.errstate(all="ignore"):
        z = t / (bg.alpha + Tf + t)
        c = a + b + xf - 1.0
        f = hyp2f1(a + b - 1.0 - r, a - 1.0, c, z)
        power = (a - 1.0) * np.log1p(-z)
        by_log = -np.expm1(power + np.log(np.where(f > 0, f, 1.0)))
        direct = 1.0 - np.exp(power) * f
        alive_part = c / (a - 1.0) * np.where(f > 0, by_log, direct)
        good = (alive_part >= low * _LOW_SLACK) & (alive_part <= high * _HIGH_SLACK)
    alive_part = np.where(good, np.clip(np.where(good, alive_part, low), low, high), 0.0)
    for i in zip(*np.nonzero(~good)):
        alive_part[i] = _quadrature(a, b + float(xf[i]), float(s[i]), float(u[i]), float(low[i]), float(high[i]))
    alive = p_alive_array(bg, xf, txf, Tf)
    with np.errstate(under="ignore"):
        return alive_part * alive


def expected_spend_array(gg: GammaGammaParams, x: ArrayLike, m_x: ArrayLike) -> FloatArray:
    """Vectorised :func:`microseg.segments.predictive.expected_spend`; x == 0 gets the population mean."""
    xf, mf = _as_float(x, m_x)
    conditional = (gg.v + mf * xf) * gg.p / (gg.p * xf + gg.q - 1.0)
    return np.where(xf > 0, conditional, gg.population_mean)


def simulate_transactions(
    bg: BgNbdParams,
    gg: GammaGammaParams,
    customers: int,
    days: int,
    rng: np.random.Generator,
    unit_days: float = 7.0,
) -> tuple[IntArray, IntArray, FloatArray]:
    """Draw purchase histories from the model itself, for benchmarks and recovery tests.

    First purchases are spread uniformly over the first half of ``days``; afterwards a customer
    buys at rate ~ Gamma(r, alpha) per unit and drops out after each repeat purchase with
    p ~ Beta(a, b) (BG/NBD has no dropout right after the first purchase);
    spend per purchase ~ Gamma(p, nu), nu ~ Gamma(q, v). Returns (customer, day, amount) arrays,
    days counted from 0, amounts in cents precision.
    """
    rate = rng.gamma(bg.r, 1.0 / bg.alpha, customers) / unit_days
    drop = rng.beta(bg.a, bg.b, customers)
    nu = rng.gamma(gg.q, 1.0 / gg.v, customers)
    now = rng.uniform(0.0, days / 2.0, customers)
    ids = np.arange(customers, dtype=np.int64)
    out_c, out_t = [ids], [now]
    active = np.ones(customers, dtype=bool)
    while active.any():
        ids, now, rate, drop = ids[active], now[active], rate[active], drop[active]
        now = now + rng.exponential(1.0, ids.shape[0]) / rate
        bought = now < days
        ids, now, rate, drop = ids[bought], now[bought], rate[bought], drop[bought]
        out_c.append(ids)
        out_t.append(now)
        active = rng.random(ids.shape[0]) >= drop
    customer = np.concatenate(out_c)
    day = np.floor(np.concatenate(out_t)).astype(np.int64)
    amount = np.round(rng.gamma(gg.p, 1.0 / nu[customer]), 2)
    return customer, day, amount

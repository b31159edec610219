"""Closed-form scoring: agreement with lifetimes 0.11.3, invariants, the model file."""

from __future__ import annotations

import dataclasses
import json
import math
import timeit
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from microseg.errors import MicrosegError
from microseg.segments.fitting import expected_purchases_array, p_alive_array
from microseg.segments.predictive import (
    BgNbdParams,
    GammaGammaParams,
    ModelFileError,
    ModelWarning,
    PredictiveModel,
    ScoreError,
    ScoreInputError,
    Scores,
    expected_purchases,
    expected_spend,
    load_default_model,
    load_model,
    model_warnings,
    p_alive,
    score,
)

# lifetimes 0.11.3 BetaGeoFitter / GammaGammaFitter on its published CDNOW summary
# (scripts/lifetimes_reference.py, run in a side venv with pandas<2.2, numpy<2, scipy<1.13).
LT_BG = BgNbdParams(r=0.2425929282798217, alpha=4.413532265271817, a=0.7928859664406721, b=2.4257523826257996)
LT_GG = GammaGammaParams(p=6.248802496072247, q=3.744588460923599, v=15.447748064939473)
# (x, t_x, T, P(alive), E[purchases in 90/7 weeks], E[purchases in 52 weeks])
LT_POINTS = [
    (0, 0.0, 38.86, 1.0, 0.06907470192174575, 0.2516657254072711),
    (1, 1.71, 38.86, 0.2122273880722091, 0.07392167085548183, 0.25990707940848995),
    (2, 30.43, 38.86, 0.7266091367990596, 0.452448613686513, 1.5585837617716687),
    (5, 20.0, 38.86, 0.28730903280899184, 0.4122818908216279, 1.379704234987171),
    (7, 35.0, 36.0, 0.898612497767883, 1.887784473190563, 6.199702452736948),
    (10, 12.5, 30.0, 0.00987587704589652, 0.03377979418606158, 0.10733614901502503),
    (20, 38.0, 38.5, 0.955187965781107, 5.250504254112864, 17.055473499593866),
    (3, 2.0, 10.0, 0.2877786305799954, 0.6850508007998773, 1.960554787877023),
    (50, 150.0, 160.0, 0.7348686450049612, 2.8047789194883537, 10.479905867385849),
    (1, 0.5, 0.5, 0.7536579508317114, 1.7151003946261534, 4.321216152063501),
]
# (x, m_x, conditional expected average spend)
LT_SPEND = [
    (1, 11.77, 18.911479869932435),
    (2, 22.35, 24.658616189237748),
    (5, 40.0, 39.61005715436918),
    (30, 12.0, 12.334342632023528),
]
TOL = 1e-4

MODEL = PredictiveModel(bgnbd=LT_BG, gamma_gamma=LT_GG)


@pytest.mark.parametrize(("x", "t_x", "T", "alive", "e90", "e52"), LT_POINTS)
def test_matches_lifetimes(x: int, t_x: float, T: float, alive: float, e90: float, e52: float) -> None:
    assert p_alive(LT_BG, x, t_x, T) == pytest.approx(alive, abs=TOL)
    assert expected_purchases(LT_BG, 90 / 7, x, t_x, T) == pytest.approx(e90, abs=TOL)
    assert expected_purchases(LT_BG, 52.0, x, t_x, T) == pytest.approx(e52, abs=TOL)
    scores = score(MODEL, x, t_x, T, 20.0)
    assert scores.p_alive == pytest.approx(alive, abs=TOL)
    assert scores.expected_purchases_90d == pytest.approx(e90, abs=TOL)


def test_issue_reference_point() -> None:
    assert round(p_alive(LT_BG, 2, 30.43, 38.86), 5) == 0.72661


@pytest.mark.parametrize(("x", "m_x", "spend"), LT_SPEND)
def test_spend_matches_lifetimes(x: int, m_x: float, spend: float) -> None:
    assert expected_spend(LT_GG, x, m_x) == pytest.approx(spend, abs=TOL)


def test_clv_is_52_week_purchases_times_spend() -> None:
    s = score(MODEL, 2, 30.43, 38.86, 22.35)
    assert s.clv_12m == pytest.approx(1.5585837617716687 * 24.658616189237748, rel=1e-9)


def test_no_repeat_purchase_uses_population_mean() -> None:
    s = score(MODEL, 0, 0.0, 38.86, None)
    assert s.p_alive == 1.0
    assert s.clv_12m == pytest.approx(0.2516657254072711 * LT_GG.population_mean, rel=1e-9)
    assert score(MODEL, 0, 0.0, 38.86, 99.0) == s
    assert score(MODEL, 3, 1.0, 5.0, None).clv_12m == pytest.approx(
        expected_purchases(LT_BG, 52.0, 3, 1.0, 5.0) * LT_GG.population_mean
    )


def test_discounting_lowers_clv_and_zero_is_undiscounted() -> None:
    undiscounted = score(MODEL, 4, 20.0, 30.0, 30.0).clv_12m
    values = [
        score(dataclasses.replace(MODEL, discount_rate_monthly=d), 4, 20.0, 30.0, 30.0).clv_12m
        for d in (0.0, 0.01, 0.05)
    ]
    assert values[0] == pytest.approx(undiscounted, rel=1e-12)
    assert values[0] > values[1] > values[2] > 0


def test_days_unit_is_the_same_model_rescaled() -> None:
    days = PredictiveModel(
        bgnbd=dataclasses.replace(LT_BG, alpha=LT_BG.alpha * 7), gamma_gamma=LT_GG, unit="days"
    )
    w = score(MODEL, 3, 20.0, 30.0, 25.0)
    d = score(days, 3, 140.0, 210.0, 25.0)
    assert d.p_alive == pytest.approx(w.p_alive, rel=1e-12)
    assert d.expected_purchases_90d == pytest.approx(w.expected_purchases_90d, rel=1e-9)
    assert d.clv_12m == pytest.approx(w.clv_12m, rel=1e-9)
    assert days.unit_days == 1.0 and MODEL.unit_days == 7.0


@pytest.mark.parametrize(
    ("x", "t_x", "T"), [(10**6, 1e5, 1e5 + 1), (10**6, 1.0, 1e5), (0, 0.0, 1e7), (5000, 0.001, 0.002), (1, 0.0, 1e-9)]
)
def test_extremes_stay_finite(x: int, t_x: float, T: float) -> None:
    s = score(MODEL, x, t_x, T, 10.0)
    assert all(math.isfinite(v) for v in (s.p_alive, s.expected_purchases_90d, s.clv_12m))
    assert 0.0 <= s.p_alive <= 1.0
    assert s.expected_purchases_90d >= 0.0 and s.clv_12m >= 0.0


def test_large_history_rate_is_sensible() -> None:
    s = score(MODEL, 10**6, 1e5, 1e5 + 1, 10.0)
    assert s.expected_purchases_90d == pytest.approx(10 * 90 / 7 * s.p_alive, rel=1e-3)


@given(
    x=st.integers(1, 500),
    frac=st.floats(0.0, 1.0),
    T=st.floats(0.01, 2000.0),
)
def test_invariants(x: int, frac: float, T: float) -> None:
    t_x = frac * T
    s = score(MODEL, x, t_x, T, 15.0)
    assert 0.0 <= s.p_alive <= 1.0
    assert s.expected_purchases_90d >= -1e-12
    assert s.clv_12m >= 0.0
    assert p_alive(LT_BG, x, T, T) >= s.p_alive - 1e-12


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ScoreInputError, match="t_x <= T"):
        score(MODEL, 2, 10.0, 5.0, 1.0)
    with pytest.raises(ScoreInputError):
        score(MODEL, -1, 0.0, 5.0, None)
    with pytest.raises(MicrosegError):
        score(MODEL, 1, 0.0, 5.0, -3.0)


def test_json_round_trip(tmp_path: Path) -> None:
    model = dataclasses.replace(MODEL, discount_rate_monthly=0.01)
    assert PredictiveModel.from_json(model.to_json()) == model
    path = tmp_path / "m.json"
    path.write_text(model.to_json())
    assert load_model(path) == model


def test_default_model_loads_and_scores() -> None:
    model = load_default_model()
    assert model.unit == "weeks" and model.fit is not None
    assert isinstance(score(model, 2, 30.43, 38.86, 22.35), Scores)


def _doc(**changes: object) -> str:
    data = MODEL.to_dict()
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        target = data
        for p in parents:
            target = target[p]
        if value is ...:
            del target[key]
        else:
            target[key] = value
    return json.dumps(data)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (_doc(format="other"), "not a microseg predictive model"),
        (_doc(version=99), "version 99 is not supported"),
        (_doc(bgnbd__r=-1), "'r' must be a finite number > 0"),
        (_doc(bgnbd__alpha="x"), "'alpha' must be a number"),
        (_doc(bgnbd__a=1.0), "must differ from 1"),
        (_doc(gamma_gamma__q=0.5), "'q' must be > 1"),
        (_doc(gamma_gamma__v=...), "missing or malformed"),
        (_doc(unit="fortnights"), "unit must be one of"),
        (_doc(clv__discount_rate_monthly=2), "discount_rate_monthly"),
    ],
)
def test_bad_model_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ModelFileError, match=message) as info:
        load_model(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, MicrosegError)


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="cannot read"):
        load_model(tmp_path / "absent.json")


def test_scoring_is_cheap() -> None:
    """Loose guard (the target, < 10 us, is measured and reported in docs/predictive.md)."""
    n = 20_000
    per_call = min(timeit.repeat(lambda: score(MODEL, 2, 30.43, 38.86, 22.35), number=n, repeat=3)) / n
    assert per_call < 50e-6


# --- issue 12: every score finite or null, for every model the fitter can produce ---------------


def _alive_part_by_integration(bg: BgNbdParams, t: float, x: int, T: float) -> float:
    """E[purchases in the next t | alive], independently of any hypergeometric function: given
    alive at T with x repeat purchases, lambda ~ Gamma(r + x, alpha + T) and p ~ Beta(a, b + x)
    (Fader, Hardie & Lee 2005), so it is the Beta mean of (1 - (1 + p t / (alpha + T))^-(r+x)) / p,
    integrated by QUADPACK: with the Beta's algebraic end-point weight, or for a very concentrated
    Beta over mean ± 40 sd of its log-space density, normalised by the same quadrature."""
    from scipy.integrate import quad
    from scipy.special import betaln

    a, b = bg.a, bg.b + x
    u, s = t / (bg.alpha + T), bg.r + x

    def g(p: float) -> float:
        return -math.expm1(-s * math.log1p(p * u)) / p if p > 0.0 else s * u

    if a < 1e3 or b < 1e3:
        value, _ = quad(g, 0.0, 1.0, weight="alg", wvar=(a - 1.0, b - 1.0), epsabs=0.0, epsrel=1e-12, limit=200)
        return value * math.exp(-betaln(a, b))
    mean, sd = a / (a + b), math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1.0)))
    mode = (a - 1.0) / (a + b - 2.0)
    peak = (a - 1.0) * math.log(mode) + (b - 1.0) * math.log1p(-mode)

    def density(p: float) -> float:
        return math.exp((a - 1.0) * math.log(p) + (b - 1.0) * math.log1p(-p) - peak)

    lo, hi = max(mean - 40 * sd, 1e-300), min(mean + 40 * sd, 1.0 - 1e-16)
    mass, _ = quad(density, lo, hi, points=[mean], epsabs=0.0, epsrel=1e-10, limit=200)
    value, _ = quad(lambda p: g(p) * density(p), lo, hi, points=[mean], epsabs=0.0, epsrel=1e-10, limit=200)
    return value / mass


ISSUE_BG = BgNbdParams(r=0.11, alpha=2.24, a=0.31, b=0.50)
"""A valid fit with a + b < 1: 2F1 is negative for one-time buyers (its log raised 'math domain error')."""


def test_a_plus_b_below_one_scores_one_time_buyers() -> None:
    model = PredictiveModel(bgnbd=ISSUE_BG, gamma_gamma=LT_GG)
    s = score(model, 0, 0.0, 1.0, None)
    assert round(s.expected_purchases_90d, 5) == 0.29594  # the issue's reference value
    assert s.expected_purchases_90d == pytest.approx(_alive_part_by_integration(ISSUE_BG, 90 / 7, 0, 1.0), rel=1e-9)
    assert s.p_alive == 1.0 and math.isfinite(s.clv_12m) and s.clv_12m > 0


@pytest.mark.parametrize(
    ("bg", "x", "t_x", "T"),
    [
        (ISSUE_BG, 0, 0.0, 1.0),
        (ISSUE_BG, 0, 0.0, 0.0),
        (ISSUE_BG, 0, 0.0, 200.0),
        (ISSUE_BG, 1, 0.5, 3.0),
        (ISSUE_BG, 7, 20.0, 30.0),
        (BgNbdParams(r=2.0, alpha=0.5, a=0.05, b=0.9), 0, 0.0, 4.0),
        (BgNbdParams(r=2.0, alpha=0.5, a=0.999, b=0.002), 0, 0.0, 4.0),
        (BgNbdParams(r=0.5, alpha=5.0, a=6.8e6, b=2.0e7), 0, 0.0, 10.0),
        (BgNbdParams(r=0.5, alpha=5.0, a=6.8e6, b=2.0e7), 4, 3.0, 10.0),
        *[(LT_BG, x, t_x, T) for x, t_x, T, *_ in LT_POINTS],
    ],
)
def test_expected_purchases_agree_with_numerical_integration(bg: BgNbdParams, x: int, t_x: float, T: float) -> None:
    for t in (90 / 7, 52.0):
        want = _alive_part_by_integration(bg, t, x, T) * p_alive(bg, x, t_x, T)
        assert expected_purchases(bg, t, x, t_x, T) == pytest.approx(want, rel=1e-6)


def test_degenerate_fit_scores_are_finite_not_minus_infinity() -> None:
    """Very large a and b (every customer the same dropout probability): 2F1 overflows; the
    scores are the Beta-concentrated limit, not -inf."""
    bg = BgNbdParams(r=0.5228, alpha=5.3788, a=6848643.03, b=20112761.38)
    model = PredictiveModel(bgnbd=bg, gamma_gamma=LT_GG)
    for x, t_x, T in [(0, 0.0, 1.0), (2, 3.0, 10.0), (40, 50.0, 52.0)]:
        s = score(model, x, t_x, T, 20.0)
        mean = bg.a / (bg.a + bg.b + x)
        u, shape = (90 / 7) / (bg.alpha + T), bg.r + x
        limit = -math.expm1(-shape * math.log1p(mean * u)) / mean * s.p_alive
        assert s.expected_purchases_90d == pytest.approx(limit, rel=1e-6)
        assert math.isfinite(s.clv_12m) and s.clv_12m > 0


_FIT_PARAMETER = st.floats(-25.0, 25.0).map(math.exp)  # the fitter refuses |log parameter| > 25
_HISTORY = st.tuples(st.integers(0, 10_000), st.floats(0.0, 1.0), st.floats(0.0, 5_000.0))


@given(r=_FIT_PARAMETER, alpha=_FIT_PARAMETER, a=_FIT_PARAMETER, b=_FIT_PARAMETER, p=_FIT_PARAMETER, q=st.floats(1e-6, 25.0).map(math.exp), v=_FIT_PARAMETER, history=_HISTORY, m_x=st.floats(0.0, 1e12), discount=st.sampled_from([0.0, 0.01]))
@settings(max_examples=400, deadline=None)
def test_every_score_is_finite_over_the_fitters_parameter_space(
    r: float, alpha: float, a: float, b: float, p: float, q: float, v: float,
    history: tuple[int, float, float], m_x: float, discount: float,
) -> None:
    assume(abs(a - 1.0) >= 1e-9)
    model = PredictiveModel(BgNbdParams(r, alpha, a, b), GammaGammaParams(p, q, v), discount_rate_monthly=discount)
    x, frac, T = history
    s = score(model, x, frac * T, T, m_x if x else None)
    assert 0.0 <= s.p_alive <= 1.0
    assert math.isfinite(s.expected_purchases_90d) and s.expected_purchases_90d >= 0.0
    assert math.isfinite(s.clv_12m) and s.clv_12m >= 0.0


@given(r=_FIT_PARAMETER, alpha=_FIT_PARAMETER, a=_FIT_PARAMETER, b=_FIT_PARAMETER, history=st.lists(_HISTORY, min_size=1, max_size=20))
@settings(max_examples=200, deadline=None)
def test_vectorised_scores_never_raise_under_errstate_raise(
    r: float, alpha: float, a: float, b: float, history: list[tuple[int, float, float]]
) -> None:
    assume(abs(a - 1.0) >= 1e-9)
    bg = BgNbdParams(r, alpha, a, b)
    x = np.array([h[0] for h in history])
    T = np.array([h[2] for h in history])
    t_x = np.array([h[1] for h in history]) * T
    with np.errstate(all="raise"):
        alive = p_alive_array(bg, x, t_x, T)
        purchases = expected_purchases_array(bg, 90 / 7, x, t_x, T)
    assert np.all((alive >= 0.0) & (alive <= 1.0))
    assert np.all(np.isfinite(purchases)) and np.all(purchases >= 0.0)
    assert purchases == pytest.approx([expected_purchases(bg, 90 / 7, int(h[0]), float(tx), float(tt)) for h, tx, tt in zip(history, t_x, T)], rel=1e-6)


def test_loader_refuses_parameters_the_scorer_is_not_checked_for(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text(_doc(bgnbd__b=1e15))
    with pytest.raises(ModelFileError, match=r"'b' = 1e\+15 is outside \[1e-12, 1e\+12\]"):
        load_model(path)


def test_loader_and_model_warnings_name_a_degenerate_fit(tmp_path: Path) -> None:
    assert model_warnings(MODEL) == [] and model_warnings(load_default_model()) == []
    path = tmp_path / "m.json"
    path.write_text(_doc(bgnbd__a=6848643.03, bgnbd__b=20112761.38))
    with pytest.warns(ModelWarning, match=r"a \+ b = 2\.696e\+07: the fit gives every customer the same dropout probability"):
        model = load_model(path)
    assert math.isfinite(score(model, 0, 0.0, 1.0, None).expected_purchases_90d)


def test_a_score_that_is_not_finite_is_an_error_and_the_field_null(monkeypatch: pytest.MonkeyPatch) -> None:
    """Belt and braces: should a score still come out inf/nan, it raises ScoreError (a
    PredictiveError), which the DNA fields turn into null."""
    import microseg.segments.predictive as predictive

    if getattr(predictive, "__file__", "").endswith(".so"):
        pytest.skip("the compiled core binds its functions early; monkeypatching needs the Python sources")
    monkeypatch.setattr(predictive, "_expected_if_alive", lambda *args: math.inf)
    with pytest.raises(ScoreError, match="not finite"):
        score(MODEL, 2, 3.0, 10.0, 20.0)

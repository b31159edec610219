"""Fitting: the paper's CDNOW parameters, agreement with lifetimes, summaries, parameter recovery."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest

from microseg.segments.fitting import (
    FitError,
    bgnbd_log_likelihood,
    expected_purchases_array,
    expected_spend_array,
    fit_bgnbd,
    fit_gamma_gamma,
    p_alive_array,
    simulate_transactions,
    summarise,
)
from microseg.segments.predictive import (
    BgNbdParams,
    GammaGammaParams,
    expected_purchases,
    expected_spend,
    p_alive,
)

CDNOW = Path(__file__).parents[1] / "data" / "CDNOW_sample.txt"
CALIBRATION_END = date(1997, 9, 30).toordinal()
# lifetimes 0.11.3 fitted on the same raw sample summarised the same way (scripts/lifetimes_reference.py)
LT_RAW = {"r": 0.24259454342106726, "alpha": 4.413602716077377, "a": 0.7929218333479081, "b": 2.4259057287218777}
LT_RAW_GG = {"p": 6.249572277635435, "q": 3.7442246747583696, "v": 15.443521018363741}


def _sig3(value: float) -> float:
    return float(f"{value:.3g}")


@pytest.fixture(scope="module")
def cdnow() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = [line.split() for line in CDNOW.read_text().splitlines() if line.strip()]
    customer = np.array([int(r[1]) for r in rows])
    day = np.array([date(int(r[2][:4]), int(r[2][4:6]), int(r[2][6:])).toordinal() for r in rows])
    amount = np.array([float(r[4]) for r in rows])
    return customer, day, amount


@pytest.fixture(scope="module")
def cdnow_summary(cdnow):  # type: ignore[no-untyped-def]
    return summarise(*cdnow, calibration_end=CALIBRATION_END)


def test_cdnow_summary_shape(cdnow_summary) -> None:  # type: ignore[no-untyped-def]
    s = cdnow_summary
    assert len(s) == 2357
    assert int((s.x > 0).sum()) == 946
    first = int(np.flatnonzero(s.customer == 1)[0])
    assert s.x[first] == 2
    assert s.t_x[first] == pytest.approx(213 / 7)
    assert s.T[first] == pytest.approx(272 / 7)
    assert s.m_x[first] == pytest.approx((29.73 + 14.96) / 2)
    assert s.holdout_length == pytest.approx(39.0)


def test_cdnow_bgnbd_reproduces_the_paper(cdnow_summary) -> None:  # type: ignore[no-untyped-def]
    fit = fit_bgnbd(cdnow_summary.x, cdnow_summary.t_x, cdnow_summary.T)
    p = fit.params
    assert (_sig3(p.r), _sig3(p.alpha), _sig3(p.a), _sig3(p.b)) == (0.243, 4.41, 0.793, 2.43)
    assert fit.log_likelihood == pytest.approx(-9582.4, abs=0.05)
    for name, value in LT_RAW.items():
        assert getattr(p, name) == pytest.approx(value, rel=1e-4)


def test_cdnow_gamma_gamma_reproduces_the_paper(cdnow_summary) -> None:  # type: ignore[no-untyped-def]
    fit = fit_gamma_gamma(cdnow_summary.x, cdnow_summary.m_x)
    p = fit.params
    assert (_sig3(p.p), _sig3(p.q), _sig3(p.v)) == (6.25, 3.74, 15.4)
    assert fit.customers == 946
    for name, value in LT_RAW_GG.items():
        assert getattr(p, name) == pytest.approx(value, rel=1e-4)


def test_summarise_merges_same_day_and_splits_holdout() -> None:
    customer = [7, 7, 7, 7, 7, 3, 3, 9]
    day = [10, 10, 17, 24, 40, 12, 12, 31]
    amount = [5.0, 5.0, 20.0, 30.0, 99.0, 1.0, 2.0, 4.0]
    s = summarise(customer, day, amount, calibration_end=30, unit_days=7.0)
    assert list(s.customer) == [3, 7]
    assert list(s.x) == [0, 2]
    assert list(s.t_x) == [0.0, 2.0]
    assert list(s.T) == pytest.approx([18 / 7, 20 / 7])
    assert list(s.m_x) == [0.0, 25.0]
    assert list(s.holdout) == [0, 1]
    assert s.holdout_length == pytest.approx(10 / 7)
    assert s.purchase_days == 4


def test_summarise_defaults_to_the_last_day() -> None:
    s = summarise([1, 1, 2], [0, 14, 7], [1.0, 1.0, 1.0])
    assert list(s.T) == [2.0, 1.0]
    assert s.holdout_length == 0.0


def test_summarise_rejects_empty_and_early_end() -> None:
    with pytest.raises(FitError, match="no transactions"):
        summarise([], [], [])
    with pytest.raises(FitError, match="before the first purchase"):
        summarise([1], [10], [1.0], calibration_end=5)


def test_fit_needs_data() -> None:
    with pytest.raises(FitError, match="at least 10 customers"):
        fit_bgnbd([1, 0], [1.0, 0.0], [2.0, 2.0])
    with pytest.raises(FitError, match="got 1 customer$"):
        fit_bgnbd([1], [1.0], [2.0])
    with pytest.raises(FitError, match="repeat buyers"):
        fit_gamma_gamma([0, 0, 1], [0.0, 0.0, 3.0])


def test_vectorised_scores_match_scalar() -> None:
    bg = BgNbdParams(0.243, 4.414, 0.793, 2.426)
    gg = GammaGammaParams(6.25, 3.74, 15.44)
    x = np.array([0, 1, 2, 7, 40, 300])
    t_x = np.array([0.0, 1.0, 30.4, 5.0, 60.0, 99.0])
    T = np.array([38.9, 10.0, 38.9, 36.0, 61.0, 100.0])
    m = np.array([0.0, 10.0, 22.0, 50.0, 5.0, 12.0])
    pa = p_alive_array(bg, x, t_x, T)
    ep = expected_purchases_array(bg, 13.0, x, t_x, T)
    es = expected_spend_array(gg, x, m)
    for i in range(len(x)):
        assert pa[i] == pytest.approx(p_alive(bg, int(x[i]), t_x[i], T[i]), rel=1e-12)
        assert ep[i] == pytest.approx(expected_purchases(bg, 13.0, int(x[i]), t_x[i], T[i]), rel=1e-10)
        assert es[i] == pytest.approx(expected_spend(gg, int(x[i]), m[i] if x[i] else None), rel=1e-12)


def test_likelihood_is_finite_for_extremes() -> None:
    bg = BgNbdParams(0.243, 4.414, 0.793, 2.426)
    ll = bgnbd_log_likelihood(bg, [0, 1, 10**5], [0.0, 0.0, 999.0], [0.0, 1e6, 1000.0])
    assert np.all(np.isfinite(ll))


def test_recovers_simulated_parameters() -> None:
    bg = BgNbdParams(0.5, 6.0, 0.7, 3.0)
    gg = GammaGammaParams(5.0, 4.0, 20.0)
    customer, day, amount = simulate_transactions(bg, gg, 20_000, 730, np.random.default_rng(7))
    s = summarise(customer, day, amount)
    fitted = fit_bgnbd(s.x, s.t_x, s.T).params
    assert fitted.r == pytest.approx(bg.r, rel=0.1)
    assert fitted.alpha == pytest.approx(bg.alpha, rel=0.15)
    assert fitted.a == pytest.approx(bg.a, rel=0.15)
    assert fitted.b == pytest.approx(bg.b, rel=0.25)
    spend = fit_gamma_gamma(s.x, s.m_x).params
    assert spend.population_mean == pytest.approx(gg.population_mean, rel=0.05)


def test_summarise_sums_money_in_cents() -> None:
    """Amounts are summed as integer cents and m_x is one division, as the scorer's m_x: three
    repeat days of 0.10 average exactly 0.1, and 12.11 + 19.99 + 17.90 is exactly 50."""
    s = summarise([1, 1, 1, 1, 2, 2, 2, 2], [0, 1, 2, 3, 0, 1, 2, 3], [5.0, 0.1, 0.1, 0.1, 1.0, 12.11, 19.99, 17.9])
    assert list(s.x) == [3, 3]
    assert s.m_x[0] == 0.1 and s.m_x[1] * 3 == 50.0
    same_day = summarise([1, 1, 1, 1], [0, 1, 1, 1], [1.0, 12.11, 19.99, 17.9])
    assert same_day.m_x[0] == 50.0
    with pytest.raises(FitError, match="amounts must be finite"):
        summarise([1], [0], [float("nan")])


def test_degenerate_population_fits_to_a_model_that_warns_and_still_scores() -> None:
    """Everyone with the same dropout probability: a and b run off to millions. The fit is kept
    (it is the maximum likelihood), model_warnings names it, and every score is finite."""
    from microseg.segments.predictive import PredictiveModel, model_warnings, score

    bg = BgNbdParams(0.5, 5.0, 1e9, 3e9)
    gg = GammaGammaParams(6.0, 4.0, 15.0)
    customer, day, amount = simulate_transactions(bg, gg, 5000, 400, np.random.default_rng(5))
    s = summarise(customer, day, amount)
    fitted = fit_bgnbd(s.x, s.t_x, s.T).params
    assert fitted.a + fitted.b > 1e4
    model = PredictiveModel(fitted, gg)
    assert any("same dropout probability" in w for w in model_warnings(model))
    with np.errstate(all="raise"):
        purchases = expected_purchases_array(fitted, 90 / 7, s.x, s.t_x, s.T)
    assert np.all(np.isfinite(purchases)) and np.all(purchases >= 0)
    for i in range(0, len(s), 97):
        one = score(model, int(s.x[i]), float(s.t_x[i]), float(s.T[i]), float(s.m_x[i]) if s.x[i] else None)
        assert one.expected_purchases_90d == pytest.approx(purchases[i], rel=1e-9)
        assert np.isfinite(one.clv_12m)

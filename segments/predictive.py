"""Closed-form scoring of the predictive DNA fields from a fitted BG/NBD + Gamma-Gamma model.

The DNA calls :func:`score` on every event and tick, so it is plain ``math`` plus one or two
calls of ``scipy.special.hyp2f1`` on floats (a few microseconds) and never optimises anything.
Fitting lives in :mod:`microseg.segments.fitting`; reading transactions in
:mod:`microseg.engine.tools.fit`.

Inputs are in the model's time unit (``model.unit``, weeks for the shipped model):

- ``x``: repeat purchases, i.e. distinct purchase days minus one;
- ``t_x``: time of the last purchase since the first;
- ``T``: customer age, time since the first purchase;
- ``m_x``: mean amount of the repeat purchases (``None`` when unknown or ``x == 0``).

Outputs: ``p_alive`` (BG/NBD P(alive), eq. 12 of Fader, Hardie & Lee 2005),
``expected_purchases_90d`` (conditional expected purchases in the next 90 days, eq. 10) and
``clv_12m``: conditional expected purchases over the next 52 weeks times the Gamma-Gamma
conditional expected spend per purchase, undiscounted by default; with a monthly discount rate
``d`` each of the twelve 52/12-week slices is divided by ``(1 + d) ** month``.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final

import numpy as np
from scipy.special import betaincinv, hyp2f1

from microseg.errors import MicrosegError

__all__ = [
    "MODEL_FORMAT",
    "MODEL_VERSION",
    "UNIT_DAYS",
    "model_version",
    "PredictiveError",
    "ModelFileError",
    "ScoreInputError",
    "ScoreError",
    "ModelWarning",
    "PARAMETER_RANGE",
    "model_warnings",
    "BgNbdParams",
    "GammaGammaParams",
    "FitInfo",
    "PredictiveModel",
    "Scores",
    "load_model",
    "default_model_path",
    "load_default_model",
    "p_alive",
    "expected_purchases",
    "expected_spend",
    "score",
    "alive_probability",
    "purchases_90d",
    "value_12m",
]

MODEL_FORMAT = "microseg.predictive"
MODEL_VERSION = 1
UNIT_DAYS: dict[str, float] = {"weeks": 7.0, "days": 1.0}
_HORIZON_90D_DAYS = 90.0
_CLV_WEEKS = 52.0
_MONTHS = 12
_LOW_SLACK: Final = 1.0 - 1e-7
_HIGH_SLACK: Final = 1.0 + 1e-7
"""How far the closed form may stray outside its bounds (rounding) before it is not trusted."""
PARAMETER_RANGE = (1e-12, 1e12)
"""Model parameters outside this range are refused: the scorer is checked to give finite values
inside it (the fitter stops far inside, at e^±25)."""
_DEGENERATE_SPREAD = 1e4
"""BG/NBD ``a + b`` above this: the fitted dropout probability is the same for every customer to
within about 1 %, the edge of what the data can tell apart (``model_warnings``)."""


class PredictiveError(MicrosegError):
    """Base of the predictive model's errors."""


class ModelFileError(PredictiveError):
    """A model file that is missing, not JSON, of another format, or with impossible parameters."""


class ScoreInputError(PredictiveError):
    """Customer statistics that cannot come from a purchase history (negative, or t_x > T)."""


class ModelWarning(UserWarning):
    """A model that loads and scores, but whose fit is degenerate (``model_warnings``)."""


class ScoreError(PredictiveError):
    """A score that came out infinite or not a number: the DNA field is null instead, never inf/nan."""


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ModelFileError(f"parameter {name!r} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v <= 0.0:
        raise ModelFileError(f"parameter {name!r} must be a finite number > 0, got {value!r}")
    low, high = PARAMETER_RANGE
    if not low <= v <= high:
        msg = f"parameter {name!r} = {v:g} is outside [{low:g}, {high:g}], where scores are checked to be finite; the fit is degenerate: refit"
        raise ModelFileError(msg)
    return v


@dataclass(frozen=True, slots=True)
class BgNbdParams:
    """BG/NBD: purchase rate ~ Gamma(r, alpha) (alpha in the model unit), dropout p ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float

    def __post_init__(self) -> None:
        for name in ("r", "alpha", "a", "b"):
            object.__setattr__(self, name, _positive(name, getattr(self, name)))
        if abs(self.a - 1.0) < 1e-9:
            msg = "BG/NBD parameter 'a' must differ from 1 (the closed form divides by a - 1); refit or use 1.0001"
            raise ModelFileError(msg)


@dataclass(frozen=True, slots=True)
class GammaGammaParams:
    """Gamma-Gamma spend: per-purchase spend ~ Gamma(p, nu), nu ~ Gamma(q, v); q > 1 for a finite mean."""

    p: float
    q: float
    v: float

    def __post_init__(self) -> None:
        for name in ("p", "q", "v"):
            object.__setattr__(self, name, _positive(name, getattr(self, name)))
        if self.q <= 1.0:
            msg = f"Gamma-Gamma parameter 'q' must be > 1 for a finite mean spend, got {self.q}; refit on more repeat buyers"
            raise ModelFileError(msg)

    @property
    def population_mean(self) -> float:
        """Expected spend per purchase of a customer we know nothing about."""
        return self.p * self.v / (self.q - 1.0)


@dataclass(frozen=True, slots=True)
class FitInfo:
    """Where a model came from: an analyst reads this before trusting the scores."""

    fitted_at: str
    source: str
    customers: int
    repeat_customers: int
    purchase_days: int
    calibration_start: str | None
    calibration_end: str | None
    bgnbd_log_likelihood: float
    gamma_gamma_log_likelihood: float | None
    mean_x: float
    mean_T: float
    mean_repeat_spend: float | None


@dataclass(slots=True, init=False)
class Scores:
    """The predictive DNA fields for one customer; ``churn_risk`` is ``1 - p_alive``."""

    p_alive: float
    expected_purchases_90d: float
    clv_12m: float

    def __init__(self, p_alive: float, expected_purchases_90d: float, clv_12m: float) -> None:
        """Written out rather than generated: a compiled ``__init__`` is several times faster."""
        self.p_alive = p_alive
        self.expected_purchases_90d = expected_purchases_90d
        self.clv_12m = clv_12m


def model_version(bgnbd: BgNbdParams, gamma_gamma: GammaGammaParams, unit: str, discount_rate_monthly: float) -> str:
    """A model's version: the first 12 hex digits of the SHA-256 of what decides its scores
    (parameters, unit, discount rate; not the fit's description), so the same model has the same
    version everywhere, as a rule set's content hash."""
    scored = {"unit": unit, "discount_rate_monthly": discount_rate_monthly, "bgnbd": asdict(bgnbd), "gamma_gamma": asdict(gamma_gamma)}
    return hashlib.sha256(json.dumps(scored, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class PredictiveModel:
    """A fitted model, as stored in a versioned JSON file.

    ``unit`` is the time unit of x/t_x/T and of ``alpha`` ("weeks" or "days");
    ``discount_rate_monthly`` discounts the CLV (0 = undiscounted). ``demo``: fitted on simulated
    journeys to show the fields, not on any shop's customers (the packaged model);
    ``description``: what it was fitted on, in words. ``version``: ``model_version`` of it.
    """

    bgnbd: BgNbdParams
    gamma_gamma: GammaGammaParams
    unit: str = "weeks"
    discount_rate_monthly: float = 0.0
    fit: FitInfo | None = None
    demo: bool = False
    description: str | None = None
    version: str = field(init=False, compare=False)
    _h90: float = field(init=False, repr=False, compare=False)
    _h12m: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.unit not in UNIT_DAYS:
            raise ModelFileError(f"unit must be one of {sorted(UNIT_DAYS)}, got {self.unit!r}")
        d = self.discount_rate_monthly
        if isinstance(d, bool) or not isinstance(d, int | float) or not math.isfinite(d) or d < 0 or d >= 1:
            raise ModelFileError(f"discount_rate_monthly must be a number in [0, 1), got {d!r}")
        object.__setattr__(self, "discount_rate_monthly", float(d))
        object.__setattr__(self, "version", model_version(self.bgnbd, self.gamma_gamma, self.unit, float(d)))
        object.__setattr__(self, "_h90", _HORIZON_90D_DAYS / UNIT_DAYS[self.unit])
        object.__setattr__(self, "_h12m", _CLV_WEEKS * 7.0 / UNIT_DAYS[self.unit])

    @property
    def unit_days(self) -> float:
        """Days per model time unit: divide day counts by this before calling :func:`score`."""
        return UNIT_DAYS[self.unit]

    def to_dict(self) -> dict[str, Any]:
        provenance: dict[str, Any] = {"model_version": self.version}
        if self.demo:
            provenance["demo"] = True
        if self.description is not None:
            provenance["description"] = self.description
        return {
            "format": MODEL_FORMAT,
            "version": MODEL_VERSION,
            **provenance,
            "unit": self.unit,
            "clv": {
                "horizon_weeks": _CLV_WEEKS,
                "discount_rate_monthly": self.discount_rate_monthly,
                "method": "expected purchases over 52 weeks x Gamma-Gamma conditional mean spend",
            },
            "bgnbd": asdict(self.bgnbd),
            "gamma_gamma": asdict(self.gamma_gamma),
            "fit": asdict(self.fit) if self.fit is not None else None,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Any, origin: str = "model") -> PredictiveModel:
        if not isinstance(data, dict):
            raise ModelFileError(f"{origin}: expected a JSON object, got {type(data).__name__}")
        if data.get("format") != MODEL_FORMAT:
            msg = f"{origin}: not a microseg predictive model (format {data.get('format')!r}, expected {MODEL_FORMAT!r})"
            raise ModelFileError(msg)
        if data.get("version") != MODEL_VERSION:
            msg = f"{origin}: model version {data.get('version')!r} is not supported (this microseg reads {MODEL_VERSION}); refit with `microseg fit`"
            raise ModelFileError(msg)
        demo, description = data.get("demo", False), data.get("description")
        if not isinstance(demo, bool) or not (description is None or isinstance(description, str)):
            raise ModelFileError(f"{origin}: demo must be true or false and description a string, got {demo!r} and {description!r}")
        try:
            bg = data["bgnbd"]
            gg = data["gamma_gamma"]
            clv = data.get("clv") or {}
            fit = data.get("fit")
            return cls(
                bgnbd=BgNbdParams(**{name: _positive(name, bg[name]) for name in ("r", "alpha", "a", "b")}),
                gamma_gamma=GammaGammaParams(**{name: _positive(name, gg[name]) for name in ("p", "q", "v")}),
                unit=data.get("unit", "weeks"),
                discount_rate_monthly=clv.get("discount_rate_monthly", 0.0),
                fit=FitInfo(**fit) if fit is not None else None,
                demo=demo,
                description=description,
            )
        except ModelFileError as invalid:
            raise ModelFileError(f"{origin}: {invalid}") from None
        except (KeyError, TypeError, AttributeError) as malformed:
            raise ModelFileError(f"{origin}: missing or malformed entry ({malformed}); refit with `microseg fit`") from None

    @classmethod
    def from_json(cls, text: str | bytes, origin: str = "model") -> PredictiveModel:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelFileError(f"{origin}: not valid JSON ({exc})") from None
        return cls.from_dict(data, origin)


def model_warnings(model: PredictiveModel) -> list[str]:
    """What an analyst should know before trusting a model's scores: parameters at the edge of
    what the data identifies. The scores stay finite; these only say the fit is degenerate."""
    bg = model.bgnbd
    found = []
    if bg.a + bg.b > _DEGENERATE_SPREAD:
        found.append(
            f"BG/NBD a + b = {bg.a + bg.b:.4g}: the fit gives every customer the same dropout probability "
            f"({bg.a / (bg.a + bg.b):.4g}); the data does not show how dropout varies (too few repeat buyers, "
            "or a simulated population?)"
        )
    for name, value in (*asdict(bg).items(), *asdict(model.gamma_gamma).items()):
        if not math.exp(-18.0) <= value <= math.exp(18.0):
            found.append(f"parameter {name} = {value:.4g} is at the edge of the fit (e^±18): the data hardly identifies it")
    return found


def load_model(path: str | Path) -> PredictiveModel:
    """Read and validate a model file written by ``microseg fit``. A degenerate model that still
    scores (``model_warnings``) is loaded with a ``ModelWarning`` for each finding."""
    try:
        text = Path(path).read_bytes()
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read the model file ({exc.strerror or exc})") from None
    model = PredictiveModel.from_json(text, str(path))
    for finding in model_warnings(model):
        warnings.warn(f"{path}: {finding}", ModelWarning, stacklevel=2)
    return model


def default_model_path() -> Path:
    """The model shipped with the package (see docs/predictive.md for how it was fitted)."""
    return Path(str(resources.files("microseg.segments").joinpath("models/default.json")))


def load_default_model() -> PredictiveModel:
    return load_model(default_model_path())


def _log_odds_dead(bg: BgNbdParams, x: int, t_x: float, T: float) -> float:
    return math.log(bg.a / (bg.b + x - 1.0)) + (bg.r + x) * (math.log(bg.alpha + T) - math.log(bg.alpha + t_x))


def p_alive(bg: BgNbdParams, x: int, t_x: float, T: float) -> float:
    """P(still active | x, t_x, T); 1 for x == 0 because BG/NBD customers only drop out after a purchase."""
    if x == 0:
        return 1.0
    lo = _log_odds_dead(bg, x, t_x, T)
    if lo > 0.0:
        e = math.exp(-lo)
        return e / (1.0 + e)
    return 1.0 / (1.0 + math.exp(lo))


def _expected_if_alive(bg: BgNbdParams, t: float, x: int, T: float) -> float:
    """E[purchases in the next t | alive at T, x repeat purchases]: E over p ~ Beta(a, b + x) of
    ``g(p) = (1 - (1 + p·u)^-(r+x)) / p``, u = t / (alpha + T), which lies between g(1) and g(0).

    Closed form first: Euler's transformation turns 2F1(r+x, b+x; a+b+x-1; z) * (1-z)^(r+x) into
    (1-z)^(a-1) * 2F1(a+b-1-r, a-1; a+b+x-1; z), so x only enters c and large x stays cheap and
    exact. 2F1 is negative for some valid fits (a + b < 1, x = 0: c < 0), so its logarithm is
    taken only when it is positive. A value that is not finite or not between the bounds (the
    series overflows for very large a and b, or c is 0) is computed by quadrature instead."""
    a, b, r = bg.a, bg.b, bg.r
    s = r + x
    u = t / (bg.alpha + T)
    z = t / (bg.alpha + T + t)
    log_1z = math.log1p(-z)  # = -log(1 + u)
    high = s * u
    low = -math.expm1(s * log_1z)
    c = a + b + x - 1.0
    try:
        f = float(hyp2f1(a + b - 1.0 - r, a - 1.0, c, z))
        if f > 0.0:
            value = c / (a - 1.0) * -math.expm1((a - 1.0) * log_1z + math.log(f))
        else:
            value = c / (a - 1.0) * (1.0 - math.exp((a - 1.0) * log_1z) * f)
    except (ValueError, OverflowError, ZeroDivisionError):
        value = math.nan
    if not low * _LOW_SLACK <= value <= high * _HIGH_SLACK:  # also not for nan
        return _expected_if_alive_quadrature(a, b + x, s, u, low, high)
    if value < low:
        return low
    if value > high:
        return high
    return value


_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(96)
_QUANTILES: Any = (_NODES + 1.0) / 2.0
_QUANTILE_WEIGHTS: Any = _WEIGHTS / 2.0
_HERMITE_NODES, _HERMITE_WEIGHTS = np.polynomial.hermite_e.hermegauss(24)
_NORMAL_NODES: list[tuple[float, float]] = [
    (float(node), float(weight) / math.sqrt(2.0 * math.pi)) for node, weight in zip(_HERMITE_NODES, _HERMITE_WEIGHTS)
]
_NORMAL_BETA = 1e3
"""Both Beta parameters above this: the Beta is as good as normal (skewness < 0.07) and its
quantiles cost ~8 µs each, so E[g(p)] is taken with Gauss-Hermite nodes instead."""


def _expected_if_alive_quadrature(a: float, b: float, s: float, u: float, low: float, high: float) -> float:
    """E[g(p)], p ~ Beta(a, b), as the mean of g over the Beta's quantiles (Gauss-Legendre in
    probability; Gauss-Hermite when the Beta is as good as normal): g is bounded and monotone, so
    this is finite and between the bounds whatever the parameters (the quantiles stay defined where
    2F1 overflows). ~20-90 µs, and only about 1e-3 accurate where the Beta piles up at p = 0
    (a ≪ 1 with tiny alpha); used only where the closed form fails."""
    if a > _NORMAL_BETA and b > _NORMAL_BETA:
        n = a + b
        mean = a / n
        sd = math.sqrt(a * b / (n * n * (n + 1.0)))
        value = 0.0
        for node, weight in _NORMAL_NODES:
            p = min(max(mean + sd * node, 0.0), 1.0)
            value += weight * (-math.expm1(-s * math.log1p(p * u)) / p if p > 0.0 else high)
        return min(max(value, low), high) if math.isfinite(value) else high
    with np.errstate(all="ignore"):
        q = betaincinv(a, b, _QUANTILES)
        g = np.where(q > 0.0, -np.expm1(-s * np.log1p(q * u)) / np.where(q > 0.0, q, 1.0), high)
        ok = np.isfinite(g)
        total = float(np.sum(_QUANTILE_WEIGHTS[ok]))
        if total > 0.5:
            value = float(np.sum(_QUANTILE_WEIGHTS[ok] * g[ok])) / total
        else:
            mean = a / (a + b)
            value = -math.expm1(-s * math.log1p(mean * u)) / mean if mean > 0.0 else high
    if not math.isfinite(value):
        value = high
    return min(max(value, low), high)


def expected_purchases(bg: BgNbdParams, t: float, x: int, t_x: float, T: float) -> float:
    """Conditional expected purchases in the next ``t`` time units (BG/NBD eq. 10)."""
    if t <= 0.0:
        return 0.0
    return _expected_if_alive(bg, t, x, T) * p_alive(bg, x, t_x, T)


def expected_spend(gg: GammaGammaParams, x: int, m_x: float | None) -> float:
    """Gamma-Gamma conditional mean spend per purchase; the population mean when nothing is known."""
    if x <= 0 or m_x is None:
        return gg.population_mean
    return (gg.v + m_x * x) * gg.p / (gg.p * x + gg.q - 1.0)


def _check(x: int, t_x: float, T: float, m_x: float | None) -> None:
    if x < 0 or t_x < 0.0 or T < t_x or (m_x is not None and m_x < 0.0):
        msg = f"impossible customer statistics x={x}, t_x={t_x}, T={T}, m_x={m_x}: need x >= 0, 0 <= t_x <= T, m_x >= 0"
        raise ScoreInputError(msg)


def alive_probability(model: PredictiveModel, x: int, t_x: float, T: float, m_x: float | None) -> float:
    """``score(...).p_alive`` alone, without the expected purchases (two hypergeometric series)."""
    _check(x, t_x, T, m_x)
    if x == 0:
        return 1.0
    alive = p_alive(model.bgnbd, x, t_x, T)
    if not 0.0 <= alive <= 1.0:  # also false for nan
        raise ScoreError(f"P(alive) is {alive} for x={x}, t_x={t_x}, T={T}")
    return alive


def purchases_90d(model: PredictiveModel, x: int, T: float, alive: float) -> float:
    """``score(...).expected_purchases_90d`` from the customer's P(alive) (``alive_probability``),
    without the CLV's series; x, T in ``model.unit``."""
    return _expected_if_alive(model.bgnbd, model._h90, x, T) * alive


def value_12m(model: PredictiveModel, x: int, T: float, m_x: float | None, alive: float) -> float:
    """``score(...).clv_12m`` from the customer's P(alive) (``alive_probability``), without the
    90-day purchases' series; x, T in ``model.unit``."""
    bg = model.bgnbd
    spend = expected_spend(model.gamma_gamma, x, m_x)
    d = model.discount_rate_monthly
    if d == 0.0:
        purchases = _expected_if_alive(bg, model._h12m, x, T) * alive
    else:
        step = model._h12m / _MONTHS
        purchases, previous = 0.0, 0.0
        for month in range(1, _MONTHS + 1):
            cumulative = _expected_if_alive(bg, step * month, x, T)
            purchases += (cumulative - previous) / (1.0 + d) ** month
            previous = cumulative
        purchases *= alive
    return purchases * spend


def score(model: PredictiveModel, x: int, t_x: float, T: float, m_x: float | None) -> Scores:
    """The predictive DNA fields of one customer; x, t_x, T in ``model.unit``."""
    alive = alive_probability(model, x, t_x, T, m_x)
    e90 = purchases_90d(model, x, T, alive)
    clv = value_12m(model, x, T, m_x, alive)
    if not (math.isfinite(e90) and math.isfinite(clv)):
        raise ScoreError(f"scores are not finite for x={x}, t_x={t_x}, T={T}, m_x={m_x}: 90-day purchases {e90}, CLV {clv}")
    return Scores(p_alive=alive, expected_purchases_90d=e90, clv_12m=clv)

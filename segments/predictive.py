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

import json
import math
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from scipy.special import hyp2f1

from microseg.errors import MicrosegError

__all__ = [
    "MODEL_FORMAT",
    "MODEL_VERSION",
    "UNIT_DAYS",
    "PredictiveError",
    "ModelFileError",
    "ScoreInputError",
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
]

MODEL_FORMAT = "microseg.predictive"
MODEL_VERSION = 1
UNIT_DAYS: dict[str, float] = {"weeks": 7.0, "days": 1.0}
_HORIZON_90D_DAYS = 90.0
_CLV_WEEKS = 52.0
_MONTHS = 12


class PredictiveError(MicrosegError):
    """Base of the predictive model's errors."""


class ModelFileError(PredictiveError):
    """A model file that is missing, not JSON, of another format, or with impossible parameters."""


class ScoreInputError(PredictiveError):
    """Customer statistics that cannot come from a purchase history (negative, or t_x > T)."""


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ModelFileError(f"parameter {name!r} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v <= 0.0:
        raise ModelFileError(f"parameter {name!r} must be a finite number > 0, got {value!r}")
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


@dataclass(frozen=True, slots=True)
class PredictiveModel:
    """A fitted model, as stored in a versioned JSON file.

    ``unit`` is the time unit of x/t_x/T and of ``alpha`` ("weeks" or "days");
    ``discount_rate_monthly`` discounts the CLV (0 = undiscounted).
    """

    bgnbd: BgNbdParams
    gamma_gamma: GammaGammaParams
    unit: str = "weeks"
    discount_rate_monthly: float = 0.0
    fit: FitInfo | None = None
    _h90: float = field(init=False, repr=False, compare=False)
    _h12m: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.unit not in UNIT_DAYS:
            raise ModelFileError(f"unit must be one of {sorted(UNIT_DAYS)}, got {self.unit!r}")
        d = self.discount_rate_monthly
        if isinstance(d, bool) or not isinstance(d, int | float) or not math.isfinite(d) or d < 0 or d >= 1:
            raise ModelFileError(f"discount_rate_monthly must be a number in [0, 1), got {d!r}")
        object.__setattr__(self, "discount_rate_monthly", float(d))
        object.__setattr__(self, "_h90", _HORIZON_90D_DAYS / UNIT_DAYS[self.unit])
        object.__setattr__(self, "_h12m", _CLV_WEEKS * 7.0 / UNIT_DAYS[self.unit])

    @property
    def unit_days(self) -> float:
        """Days per model time unit: divide day counts by this before calling :func:`score`."""
        return UNIT_DAYS[self.unit]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": MODEL_FORMAT,
            "version": MODEL_VERSION,
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


def load_model(path: str | Path) -> PredictiveModel:
    """Read and validate a model file written by ``microseg fit``."""
    try:
        text = Path(path).read_bytes()
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read the model file ({exc.strerror or exc})") from None
    return PredictiveModel.from_json(text, str(path))


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
    # Euler's transformation turns 2F1(r+x, b+x; a+b+x-1; z) * (1-z)^(r+x) into
    # (1-z)^(a-1) * 2F1(a+b-1-r, a-1; a+b+x-1; z): x only enters c, so large x stays cheap and exact.
    a, b, r = bg.a, bg.b, bg.r
    z = t / (bg.alpha + T + t)
    c = a + b + x - 1.0
    f = float(hyp2f1(a + b - 1.0 - r, a - 1.0, c, z))
    log_term = (a - 1.0) * math.log1p(-z) + math.log(f)
    return c / (a - 1.0) * -math.expm1(log_term)


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
    return 1.0 if x == 0 else p_alive(model.bgnbd, x, t_x, T)


def score(model: PredictiveModel, x: int, t_x: float, T: float, m_x: float | None) -> Scores:
    """The predictive DNA fields of one customer; x, t_x, T in ``model.unit``."""
    alive = alive_probability(model, x, t_x, T, m_x)
    bg = model.bgnbd
    e90 = _expected_if_alive(bg, model._h90, x, T) * alive
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
    return Scores(p_alive=alive, expected_purchases_90d=e90, clv_12m=purchases * spend)

"""Reference numbers from ``lifetimes`` 0.11.3 for tests/segments/test_predictive.py and test_fitting.py.

``lifetimes`` is unmaintained and breaks on pandas >= 2.2 / numpy 2, so it is never a dependency
of microseg: run this script in a throw-away side venv and paste its output into the tests::

    python3 -m venv /tmp/ltvenv
    /tmp/ltvenv/bin/pip install lifetimes==0.11.3 'pandas<2.2' 'numpy<2' 'scipy<1.13'
    /tmp/ltvenv/bin/python scripts/lifetimes_reference.py tests/data/CDNOW_sample.txt

It fits BG/NBD and Gamma-Gamma twice: on lifetimes' own published CDNOW summary (times rounded
to 0.01 week) and on a summary built from the raw sample the way microseg builds it (calibration
1997-01-01..1997-09-30, same-day purchases merged, exact weeks), then evaluates P(alive) and the
conditional expected purchases at fixed points with the published-summary parameters.
"""

from __future__ import annotations

import json
import sys

import pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter
from lifetimes.datasets import load_cdnow_summary, load_cdnow_summary_data_with_monetary_value

CALIBRATION_END = pd.Timestamp("1997-09-30")
POINTS = [
    (0, 0.0, 38.86),
    (1, 1.71, 38.86),
    (2, 30.43, 38.86),
    (5, 20.0, 38.86),
    (7, 35.0, 36.0),
    (10, 12.5, 30.0),
    (20, 38.0, 38.5),
    (3, 2.0, 10.0),
    (50, 150.0, 160.0),
    (1, 0.5, 0.5),
]
HORIZONS = [90 / 7, 52.0]
SPEND_POINTS = [(1, 11.77), (2, 22.35), (5, 40.0), (30, 12.0)]


def summary_from_raw(path: str) -> pd.DataFrame:
    raw = pd.read_csv(path, sep=r"\s+", header=None, names=["master_id", "id", "date", "cds", "amount"])
    raw["date"] = pd.to_datetime(raw["date"].astype(str), format="%Y%m%d")
    daily = raw.groupby(["id", "date"], as_index=False)["amount"].sum()
    cal = daily[daily["date"] <= CALIBRATION_END].sort_values(["id", "date"])
    first = cal.groupby("id")["date"].transform("min")
    cal = cal.assign(is_first=cal["date"] == first)
    grouped = cal.groupby("id")
    out = pd.DataFrame(
        {
            "frequency": grouped.size() - 1,
            "recency": (grouped["date"].max() - grouped["date"].min()).dt.days / 7.0,
            "T": (CALIBRATION_END - grouped["date"].min()).dt.days / 7.0,
            "repeat_spend": cal[~cal["is_first"]].groupby("id")["amount"].sum(),
        }
    ).fillna({"repeat_spend": 0.0})
    out["monetary_value"] = (out["repeat_spend"] / out["frequency"]).where(out["frequency"] > 0, 0.0)
    return out


def fit(summary: pd.DataFrame) -> dict[str, float]:
    bg = BetaGeoFitter().fit(summary["frequency"], summary["recency"], summary["T"])
    repeaters = summary[summary["frequency"] > 0]
    gg = GammaGammaFitter().fit(repeaters["frequency"], repeaters["monetary_value"])
    params = {k: float(v) for k, v in bg.params_.items()}
    params.update({f"gg_{k}": float(v) for k, v in gg.params_.items()})
    return params


def main(path: str) -> None:
    published = load_cdnow_summary(index_col=[0])
    published_gg = load_cdnow_summary_data_with_monetary_value()
    published["monetary_value"] = published_gg["monetary_value"].values
    bg = BetaGeoFitter().fit(published["frequency"], published["recency"], published["T"])
    points = []
    for x, t_x, T in POINTS:
        p_alive = bg.conditional_probability_alive(x, t_x, T)
        row = {"x": x, "t_x": t_x, "T": T, "p_alive": float(p_alive)}
        for h in HORIZONS:
            row[f"expected_{h:.6f}"] = float(
                bg.conditional_expected_number_of_purchases_up_to_time(h, x, t_x, T)
            )
        points.append(row)
    repeaters = published[published["frequency"] > 0]
    gg = GammaGammaFitter().fit(repeaters["frequency"], repeaters["monetary_value"])
    spend = [
        {"x": x, "m_x": m, "expected_spend": float(gg.conditional_expected_average_profit(x, m))}
        for x, m in SPEND_POINTS
    ]
    result = {
        "published_summary_fit": fit(published),
        "raw_sample_fit": fit(summary_from_raw(path)),
        "points_with_published_fit": points,
        "spend_with_published_fit": spend,
    }
    json.dump(result, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/CDNOW_sample.txt")

"""Feature recipes: turn a raw table into model features. Only past values feed each row."""

from __future__ import annotations

import numpy as np
import pandas as pd

DEMAND, TEMPERATURE, WORKDAY = "Demand", "Temperature", "WorkDay"
SLOTS_PER_DAY, SLOTS_PER_WEEK = 48, 336


def elecdemand(raw: pd.DataFrame, start: str, freq: str) -> pd.DataFrame:
    """19 features for half-hourly demand: lags, rolling stats, temperature, calendar."""
    missing = [c for c in (DEMAND, TEMPERATURE, WORKDAY) if c not in raw.columns]
    if missing:
        from onnxship.errors import DataError

        raise DataError(f"elecdemand recipe needs columns {missing} (table has {list(raw.columns)})")
    when = pd.date_range(start=start, periods=len(raw), freq=freq)
    demand, temp = raw[DEMAND].astype(float), raw[TEMPERATURE].astype(float)
    past = demand.shift(1)
    slot = (when.hour * 60 + when.minute) // 30
    out = pd.DataFrame(
        {
            "demand_lag_1": past,
            "demand_lag_2": demand.shift(2),
            "demand_lag_48": demand.shift(SLOTS_PER_DAY),
            "demand_lag_96": demand.shift(2 * SLOTS_PER_DAY),
            "demand_lag_336": demand.shift(SLOTS_PER_WEEK),
            "demand_roll_mean_48": past.rolling(SLOTS_PER_DAY).mean(),
            "demand_roll_std_48": past.rolling(SLOTS_PER_DAY).std(),
            "demand_roll_mean_336": past.rolling(SLOTS_PER_WEEK).mean(),
            "temperature": temp,
            "temperature_lag_1": temp.shift(1),
            "temperature_lag_48": temp.shift(SLOTS_PER_DAY),
            "temperature_roll_mean_48": temp.shift(1).rolling(SLOTS_PER_DAY).mean(),
            "temperature_roll_max_48": temp.shift(1).rolling(SLOTS_PER_DAY).max(),
            "workday": raw[WORKDAY].astype(float),
            "time_of_day": slot.astype(float),
            "time_of_day_sin": np.sin(2 * np.pi * slot / SLOTS_PER_DAY),
            "time_of_day_cos": np.cos(2 * np.pi * slot / SLOTS_PER_DAY),
            "day_of_week": when.dayofweek.astype(float),
            "day_of_year_sin": np.sin(2 * np.pi * when.dayofyear / 365.25),
            DEMAND: demand,
        },
        index=raw.index,
    )
    out.insert(0, "timestamp", when)
    # the first week has no complete lag history
    return out.iloc[SLOTS_PER_WEEK:].reset_index(drop=True)


RECIPES = {"elecdemand": elecdemand}

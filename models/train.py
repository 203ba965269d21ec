#!/usr/bin/python3
"""Train and export tidecast's shipped weather forecasters.

Data: vega-datasets `data/weather.csv` (Seattle and New York, daily, 2012-2015),
read from node_modules so the data is exactly what npm ships.
Split by date: fit on 2012-01-01..2014-12-31, report metrics on 2015.
Calibration: the same architecture fit on 2012-2013 forecasts 2014; its
residuals (actual - forecast) per horizon and target go into the card as
quantiles, which seed tidecast's online prediction intervals, and the card
reports how a fixed interval from them covers 2015.

Every model sees 4 features per day (precipitation, temp_max, temp_min, wind),
standardised with the training-period mean/std; a model whose spec says so
also sees the day of the year as two calendar inputs (sin and cos of its phase
in a mean Gregorian year), computed from the date as tidecast computes them
from a step's event time (src/inference/calendar.ts). The forecasters (weather-lstm,
-gru, -rnn, -brnn) forecast temp_max and temp_min for the next 1, 2 and 3 days
(6 outputs, horizon-major); the classifier weather-rain gives two logits per
day, dry or wet (any precipitation) tomorrow.

Run with Debian's interpreter (python3-torch, python3-onnx):
    /usr/bin/python3 models/train.py          # or: npm run models
    /usr/bin/python3 models/train.py weather-rain   # only the named models
Deterministic: fixed seeds, one thread, deterministic algorithms; running it
twice gives byte-identical .onnx, card and fixture files (test/models.test).
"""
import csv
import hashlib
import json
import math
import os
import random
import sys

import warnings

import numpy as np
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = os.path.join(ROOT, "node_modules", "vega-datasets", "data", "weather.csv")

FEATURES = ["precipitation", "temp_max", "temp_min", "wind"]
UNITS = {"precipitation": "mm", "temp_max": "°C", "temp_min": "°C", "wind": "m/s"}
TARGETS = ["temp_max", "temp_min"]
HORIZONS = [1, 2, 3]
STEP_SECONDS = 86400
TRAIN_END = "2014-12-31"
TEST_START = "2015-01-01"
CALIB_START = "2014-01-01"
# Residual quantiles written to each card: enough points to seed any interval level and read crossing probabilities.
QUANTILES = [0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5,
             0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.975, 0.99, 0.995]
# Interval levels the card reports held-out coverage for (tidecast's defaults).
LEVELS = [0.8, 0.95]
YEAR_DAYS = 365.2425
DOY = [{"name": "doy_sin", "cycle": "dayOfYear", "fn": "sin"}, {"name": "doy_cos", "cycle": "dayOfYear", "fn": "cos"}]
BRNN_WINDOW = 14
OPSET = 14
SEED = 20121

# The exporter warns about RNN ops and constant shape inference; the parity tests
# (test/parity.test) are what prove the exported graphs right.
warnings.filterwarnings("ignore", category=UserWarning)
torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


def seed_everything():
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)


def load_series():
    """Return {city: (dates[list], values[np.float64, (N, 4)])}, in date order."""
    rows = {}
    with open(DATA, newline="") as f:
        for r in csv.DictReader(f):
            rows.setdefault(r["location"], []).append(r)
    out = {}
    for city, rs in sorted(rows.items()):
        rs.sort(key=lambda r: r["date"])
        dates = [r["date"] for r in rs]
        vals = np.array([[float(r[k]) for k in FEATURES] for r in rs], dtype=np.float64)
        out[city] = (dates, vals)
    return out


def epoch_days(date):
    """Days since 1970-01-01 of an ISO date (midnight UTC): a step's event time / 1 day."""
    y, m, d = (int(x) for x in date.split("-"))
    return (np.datetime64(f"{y:04d}-{m:02d}-{d:02d}") - np.datetime64("1970-01-01")).astype(np.int64)


def calendar_phase(cycle, days):
    """The phase in [0, 1) of an event time (days since the epoch, UTC) in a cycle, as tidecast computes it."""
    x = {"hourOfDay": days, "dayOfWeek": (days + 3) / 7, "dayOfYear": days / YEAR_DAYS}[cycle]
    return x - np.floor(x)


def calendar_inputs(dates, calendar):
    """The calendar inputs of each date, [N, len(calendar)]: sin or cos of 2 pi x its phase."""
    days = np.array([epoch_days(d) for d in dates], dtype=np.float64)
    cols = [(np.sin if c["fn"] == "sin" else np.cos)(2 * np.pi * calendar_phase(c["cycle"], days)) for c in calendar]
    return np.stack(cols, axis=1) if cols else np.zeros((len(dates), 0))


def targets_for(vals):
    """Horizon-major targets: y[t] = [tmax(t+1), tmin(t+1), tmax(t+2), ...]; NaN past the end."""
    n = len(vals)
    ti = [FEATURES.index(t) for t in TARGETS]
    y = np.full((n, len(HORIZONS) * len(TARGETS)), np.nan)
    for hi, h in enumerate(HORIZONS):
        for k, fi in enumerate(ti):
            y[: n - h, hi * len(TARGETS) + k] = vals[h:, fi]
    return y


class Stateful(nn.Module):
    """Many-to-many forecaster: one forecast vector per input step, state in and out."""

    def __init__(self, kind, hidden, layers, outputs=len(HORIZONS) * len(TARGETS), inputs=len(FEATURES)):
        super().__init__()
        cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[kind]
        self.kind = kind
        self.rnn = cls(inputs, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, outputs)

    def forward(self, x, h0, c0=None):
        if self.kind == "lstm":
            y, (hn, cn) = self.rnn(x, (h0, c0))
            return self.head(y), hn, cn
        y, hn = self.rnn(x, h0)
        return self.head(y), hn


class Windowed(nn.Module):
    """Many-to-one bidirectional LSTM: a fixed window in, one forecast vector out."""

    def __init__(self, hidden, inputs=len(FEATURES)):
        super().__init__()
        self.rnn = nn.LSTM(inputs, hidden, 1, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, len(HORIZONS) * len(TARGETS))

    def forward(self, x):
        _, (hn, _) = self.rnn(x)
        return self.head(torch.cat([hn[-2], hn[-1]], dim=1))


SPECS = {
    "weather-lstm": dict(kind="lstm", hidden=32, layers=2, epochs=60),
    # Day of the year helps the GRU's temp_min at every horizon; the others did worse with it (models/README.md).
    "weather-gru": dict(kind="gru", hidden=32, layers=2, epochs=60, calendar=True),
    "weather-rnn": dict(kind="rnn", hidden=32, layers=1, epochs=120),
    "weather-brnn": dict(kind="brnn", hidden=32, layers=1, epochs=25),
}


def zero_state(model, batch):
    L, H = model.rnn.num_layers, model.rnn.hidden_size
    h = torch.zeros(L, batch, H)
    return (h, torch.zeros(L, batch, H)) if model.kind == "lstm" else (h,)


def masked_mse(out, y, warmup):
    """Squared error over the targets that exist (NaN: past the end), after the warm-up steps."""
    mask = ~torch.isnan(y)
    mask[:, :warmup] = False
    return ((out - torch.nan_to_num(y)) ** 2)[mask].mean()


def masked_cross_entropy(logits, y, warmup):
    """Cross-entropy of class logits [B, T, C] against class indices y [B, T, 1] (NaN: unknown)."""
    y = y[..., 0]
    mask = ~torch.isnan(y)
    mask[:, :warmup] = False
    return nn.functional.cross_entropy(logits[mask], y[mask].long())


def train_stateful(model, xs, ys, epochs, chunk=120, warmup=10, batch=16, loss_fn=masked_mse):
    """Truncated sequences from the training period; loss skips the first warm-up steps."""
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    rng = np.random.RandomState(SEED)
    for _ in range(epochs):
        starts = [(c, s) for c in range(len(xs)) for s in range(0, len(xs[c]) - chunk, 20)]
        rng.shuffle(starts)
        for i in range(0, len(starts), batch):
            sel = starts[i : i + batch]
            x = torch.tensor(np.stack([xs[c][s : s + chunk] for c, s in sel]), dtype=torch.float32)
            y = torch.tensor(np.stack([ys[c][s : s + chunk] for c, s in sel]), dtype=torch.float32)
            out = model(x, *zero_state(model, len(sel)))[0]
            loss = loss_fn(out, y, warmup)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        sched.step()


def windows(x, y, T):
    """All windows ending at step t (t >= T-1) with the target issued at t."""
    idx = [t for t in range(T - 1, len(x)) if not np.isnan(y[t]).any()]
    return np.stack([x[t - T + 1 : t + 1] for t in idx]), np.stack([y[t] for t in idx]), idx


def train_windowed(model, xs, ys, epochs, batch=32):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    wx, wy = [], []
    for x, y in zip(xs, ys):
        a, b, _ = windows(x, y, BRNN_WINDOW)
        wx.append(a)
        wy.append(b)
    X = torch.tensor(np.concatenate(wx), dtype=torch.float32)
    Y = torch.tensor(np.concatenate(wy), dtype=torch.float32)
    rng = np.random.RandomState(SEED)
    for _ in range(epochs):
        perm = rng.permutation(len(X))
        for i in range(0, len(X), batch):
            sel = torch.tensor(perm[i : i + batch])
            loss = ((model(X[sel]) - Y[sel]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        sched.step()


def metrics(pred, actual):
    """Per output column MAE/RMSE in physical units, over rows where the actual exists."""
    out = {}
    for hi, h in enumerate(HORIZONS):
        for k, t in enumerate(TARGETS):
            j = hi * len(TARGETS) + k
            m = ~np.isnan(actual[:, j])
            err = pred[m, j] - actual[m, j]
            out[f"{t}@{h}"] = {
                "mae": round(float(np.abs(err).mean()), 4),
                "rmse": round(float(math.sqrt((err**2).mean())), 4),
                "n": int(m.sum()),
            }
    return out


def f32list(a):
    """float32 values as JSON numbers that round-trip exactly (repr of the float32 widened to float64)."""
    return [float(v) for v in np.asarray(a, dtype=np.float32).ravel()]


def export(model, name, kind, sample_batch=2):
    path = os.path.join(HERE, f"{name}.onnx")
    F = model.rnn.input_size
    if kind == "brnn":
        x = torch.zeros(sample_batch, BRNN_WINDOW, F)
        args, inputs, outputs = (x,), ["input"], ["output"]
        dyn = {"input": {0: "batch"}, "output": {0: "batch"}}
    else:
        x = torch.zeros(sample_batch, 3, F)
        state = zero_state(model, sample_batch)
        args = (x, *state)
        inputs = ["input", "h0", "c0"][: 1 + len(state)]
        outputs = ["output", "hn", "cn"][: 1 + len(state)]
        dyn = {"input": {0: "batch", 1: "time"}, "output": {0: "batch", 1: "time"}}
        for n in inputs[1:] + outputs[1:]:
            dyn[n] = {1: "batch"}
    torch.onnx.export(
        model, args, path, input_names=inputs, output_names=outputs,
        dynamic_axes=dyn, opset_version=OPSET, do_constant_folding=True,
    )
    return path, inputs, outputs


def signature(inputs, outputs):
    """The card's signature: data input and output, then the state pairs in export order."""
    return {
        "input": "input",
        "output": "output",
        "layout": "batch-first",
        "states": [{"input": i, "output": o} for i, o in zip(inputs[1:], outputs[1:])],
    }


def provenance(series):
    """Where a shipped model's data came from and how it was trained."""
    cities = list(series)
    return {
        "dataset": "vega-datasets",
        "file": "data/weather.csv",
        "streams": cities,
        "train": {"from": series[cities[0]][0][0], "to": TRAIN_END},
        "test": {"from": TEST_START, "to": series[cities[0]][0][-1]},
        "trainer": "models/train.py",
        "seed": SEED,
        "torch": torch.__version__,
        "opset": OPSET,
    }


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def standardised(series, test_start=TEST_START):
    """Held-out split per city, the training period's feature mean/std, and every city's scaled inputs."""
    cities = list(series)
    split = {c: series[c][0].index(test_start) for c in cities}
    train_vals = np.concatenate([series[c][1][: split[c]] for c in cities])
    f_mean, f_std = train_vals.mean(0), train_vals.std(0)
    xs_all = {c: (series[c][1] - f_mean) / f_std for c in cities}
    return cities, split, f_mean, f_std, xs_all


def prepare(series, test_start, calendar):
    """Everything a fit needs with the held-out period starting at test_start: scaled inputs (features, then
    calendar inputs), scaled targets, and the training arrays, whose targets never reach into the held-out period."""
    cities, split, f_mean, f_std, xs_all = standardised(series, test_start)
    if calendar:
        xs_all = {c: np.concatenate([xs_all[c], calendar_inputs(series[c][0], calendar)], axis=1) for c in cities}
    ti = [FEATURES.index(t) for t in TARGETS]
    t_mean = np.tile(f_mean[ti], len(HORIZONS))
    t_std = np.tile(f_std[ti], len(HORIZONS))
    ys_raw = {c: targets_for(series[c][1]) for c in cities}
    ys_all = {c: (ys_raw[c] - t_mean) / t_std for c in cities}
    ys_train = []
    for c in cities:
        y = ys_all[c][: split[c]].copy()
        for hi, h in enumerate(HORIZONS):
            y[split[c] - h :, hi * len(TARGETS) : (hi + 1) * len(TARGETS)] = np.nan
        ys_train.append(y)
    xs_train = [xs_all[c][: split[c]] for c in cities]
    return dict(cities=cities, split=split, f_mean=f_mean, f_std=f_std, xs_all=xs_all, ti=ti, t_mean=t_mean,
                t_std=t_std, ys_raw=ys_raw, xs_train=xs_train, ys_train=ys_train)


def fit(spec, data):
    """A forecaster of the spec's architecture trained on data's training arrays, in eval mode."""
    seed_everything()
    kind = spec["kind"]
    n_in = data["xs_train"][0].shape[1]
    if kind == "brnn":
        model = Windowed(spec["hidden"], inputs=n_in)
        train_windowed(model, data["xs_train"], data["ys_train"], spec["epochs"])
    else:
        model = Stateful(kind, spec["hidden"], spec["layers"], inputs=n_in)
        train_stateful(model, data["xs_train"], data["ys_train"], spec["epochs"])
    model.eval()
    return model


def run_series(model, kind, x_all):
    """Forecasts (scaled) for every step of one city's whole series: the state warmed from its first day."""
    with torch.no_grad():
        if kind == "brnn":
            wx, _, idx = windows(x_all, np.zeros((len(x_all), 1)), BRNN_WINDOW)
            out = np.full((len(x_all), len(HORIZONS) * len(TARGETS)), np.nan)
            out[idx] = model(torch.tensor(wx, dtype=torch.float32)).numpy()
            return out
        x = torch.tensor(x_all, dtype=torch.float32).unsqueeze(0)
        return model(x, *zero_state(model, 1))[0][0].numpy()


def residual_quantiles(resid):
    """Per output column: n, MAE and the QUANTILES of actual - forecast (physical units) over the rows that have an actual."""
    out = {}
    for hi, h in enumerate(HORIZONS):
        for k, t in enumerate(TARGETS):
            r = resid[:, hi * len(TARGETS) + k]
            r = r[~np.isnan(r)]
            out[f"{t}@{h}"] = {
                "n": int(len(r)),
                "mae": round(float(np.abs(r).mean()), 4),
                "quantiles": [[p, round(float(np.quantile(r, p)), 4)] for p in QUANTILES],
            }
    return out


def fixed_coverage(residuals, resid_test):
    """How intervals fixed at the calibration quantiles cover the held-out residuals: per column and level, coverage and width."""
    out = {}
    for hi, h in enumerate(HORIZONS):
        for k, t in enumerate(TARGETS):
            key = f"{t}@{h}"
            q = dict((p, v) for p, v in residuals[key]["quantiles"])
            r = resid_test[:, hi * len(TARGETS) + k]
            r = r[~np.isnan(r)]
            cells = {}
            for level in LEVELS:
                lo, hi_ = q[round((1 - level) / 2, 4)], q[round(1 - (1 - level) / 2, 4)]
                cells[str(level)] = {"coverage": round(float(((r >= lo) & (r <= hi_)).mean()), 4), "width": round(hi_ - lo, 4)}
            out[key] = cells
    return out


def main():
    series = load_series()
    only = sys.argv[1:]
    for name, spec in SPECS.items():
        if only and name not in only:
            continue
        kind = spec["kind"]
        calendar = DOY if spec.get("calendar") else []
        data = prepare(series, TEST_START, calendar)
        cities, split, xs_all, ti = data["cities"], data["split"], data["xs_all"], data["ti"]
        t_mean, t_std, ys_raw = data["t_mean"], data["t_std"], data["ys_raw"]
        f_mean, f_std = data["f_mean"], data["f_std"]
        model = fit(spec, data)

        # Held-out evaluation: run each city's whole series (state warmed on the training years), score forecasts
        # issued in 2015 whose targets are in 2015.
        preds, acts, pers = [], [], []
        for c in cities:
            out = run_series(model, kind, xs_all[c])
            s = split[c]
            preds.append(out[s:] * t_std + t_mean)
            acts.append(ys_raw[c][s:])
            pers.append(np.tile(series[c][1][s:, ti], len(HORIZONS)))
        pred, act, per = np.concatenate(preds), np.concatenate(acts), np.concatenate(pers)

        # Calibration: the same architecture fit on the years before 2014 forecasts 2014 (targets inside 2014).
        cal = prepare(series, CALIB_START, calendar)
        cal_model = fit(spec, cal)
        resid = []
        for c in cities:
            out = run_series(cal_model, kind, cal["xs_all"][c]) * cal["t_std"] + cal["t_mean"]
            s, e = cal["split"][c], split[c]
            y = cal["ys_raw"][c][s:e].copy()
            for hi, h in enumerate(HORIZONS):
                y[e - s - h :, hi * len(TARGETS) : (hi + 1) * len(TARGETS)] = np.nan
            resid.append(y - out[s:e])
        residuals = residual_quantiles(np.concatenate(resid))

        # The held-out forecasts themselves, in physical units, for the daemon's
        # end-to-end acceptance test (test/accuracy.e2e.test).
        heldout = {
            "model": name,
            "from": TEST_START,
            "warmupFrom": series[cities[0]][0][0],
            "outputLayout": "horizon-major",
            "streams": {
                c: {"dates": series[c][0][split[c]:], "outputs": [[float(v) for v in r] for r in p]}
                for c, p in zip(cities, preds)
            },
        }
        with open(os.path.join(HERE, "fixtures", f"{name}.heldout.json"), "w") as f:
            json.dump(heldout, f, separators=(",", ":"))
            f.write("\n")
        path, inputs, outputs = export(model, name, kind)

        card = {
            "$schema": "./model-card.schema.json",
            "name": name,
            "description": (
                f"{'Bidirectional LSTM over a fixed window' if kind == 'brnn' else kind.upper()} "
                f"({spec['layers']} layer(s), hidden {spec['hidden']}) forecasting daily "
                "temp_max/temp_min 1-3 days ahead from daily weather"
                + (" and the day of the year." if calendar else ".")
            ),
            "architecture": {"cell": "lstm" if kind == "brnn" else kind, "layers": spec["layers"],
                             "hidden": spec["hidden"], "bidirectional": kind == "brnn"},
            "mode": "windowed" if kind == "brnn" else "stateful",
            "window": BRNN_WINDOW if kind == "brnn" else None,
            "stepSeconds": STEP_SECONDS,
            "features": [{"name": f, "unit": UNITS[f]} for f in FEATURES],
            **({"calendar": calendar} if calendar else {}),
            "targets": [{"name": t, "unit": UNITS[t]} for t in TARGETS],
            "horizons": HORIZONS,
            "outputLayout": "horizon-major",
            "scaler": {
                "features": {"mean": f_mean.tolist(), "std": f_std.tolist()},
                "targets": {"mean": f_mean[ti].tolist(), "std": f_std[ti].tolist()},
            },
            "signature": signature(inputs, outputs),
            "provenance": provenance(series),
            "calibration": {
                "from": CALIB_START,
                "to": TRAIN_END,
                "method": f"actual - forecast of the same architecture fit on {series[cities[0]][0][0]}..2013-12-31",
                "residuals": residuals,
            },
            "metrics": {"test": {
                "model": metrics(pred, act),
                "persistence": metrics(per, act),
                "intervals": fixed_coverage(residuals, act - pred),
            }},
            "sha256": sha256(path),
        }
        with open(os.path.join(HERE, f"{name}.card.json"), "w") as f:
            json.dump(card, f, indent=2, ensure_ascii=False)
            f.write("\n")

        # Reference fixture: the first 60 held-out Seattle days, PyTorch full-sequence outputs.
        c, n = cities[cities.index("Seattle")], 60
        s = split[c]
        x_ref = torch.tensor(xs_all[c][s : s + n], dtype=torch.float32).unsqueeze(0)
        with torch.no_grad():
            if kind == "brnn":
                wx, _, idx = windows(xs_all[c][s : s + n], np.zeros((n, 1)), BRNN_WINDOW)
                ref_out = model(torch.tensor(wx, dtype=torch.float32)).numpy()
                fixture_out = {"firstStep": idx[0], "outputs": [f32list(r) for r in ref_out]}
            else:
                out, *states = model(x_ref, *zero_state(model, 1))
                fixture_out = {
                    "outputs": [f32list(r) for r in out[0].numpy()],
                    "finalStates": {o: f32list(st.numpy()) for o, st in zip(outputs[1:], states)},
                }
        write_reference(name, series, c, s, n, x_ref, fixture_out)
        m, p = card["metrics"]["test"]["model"], card["metrics"]["test"]["persistence"]
        print(f"{name}: " + "  ".join(f"{k} mae {m[k]['mae']:.2f} (persistence {p[k]['mae']:.2f})" for k in m))
        iv = card["metrics"]["test"]["intervals"]
        print(f"{name}: fixed-interval coverage " + "  ".join(f"{k} " + "/".join(f"{iv[k][str(l)]['coverage']:.3f}" for l in LEVELS) for k in iv))


def write_reference(name, series, city, start, n, x_ref, outputs):
    """fixtures/NAME.reference.json: n days of a city from start, raw and scaled, with PyTorch's outputs."""
    fixture = {
        "model": name,
        "stream": city,
        "dates": series[city][0][start : start + n],
        "raw": [[float(v) for v in r] for r in series[city][1][start : start + n]],
        "inputs": [f32list(r) for r in x_ref[0].numpy()],
        **outputs,
    }
    with open(os.path.join(HERE, "fixtures", f"{name}.reference.json"), "w") as f:
        json.dump(fixture, f, separators=(",", ":"))
        f.write("\n")


def write_metrics_table():
    """Rewrite the held-out metrics table in models/README.md from the cards."""
    readme = os.path.join(HERE, "README.md")
    rows = ["| model | " + " | ".join(f"{t}+{h}d" for h in HORIZONS for t in TARGETS) + " |",
            "|---|" + "---|" * (len(HORIZONS) * len(TARGETS))]
    for name in SPECS:
        card_path = os.path.join(HERE, f"{name}.card.json")
        if not os.path.exists(card_path):
            continue
        with open(card_path) as f:
            test = json.load(f)["metrics"]["test"]
        cells = [f"{test['model'][k]['mae']:.2f} / {test['persistence'][k]['mae']:.2f}"
                 for k in (f"{t}@{h}" for h in HORIZONS for t in TARGETS)]
        rows.append(f"| `{name}` | " + " | ".join(cells) + " |")
    replace_between(readme, "metrics-table", rows)


def replace_between(readme, marker, rows):
    """Rewrite the lines between <!-- marker:start --> and <!-- marker:end --> in the file."""
    with open(readme) as f:
        text = f.read()
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    with open(readme, "w") as f:
        f.write(head + start + "\n" + "\n".join(rows) + "\n" + end + tail)


def write_classifier_table():
    """The classifier's held-out accuracy, Brier score and log loss against its baselines, in models/README.md."""
    with open(os.path.join(HERE, f"{RAIN['name']}.card.json")) as f:
        test = json.load(f)["metrics"]["test"]
    m, p, c = (test[k]["rain@1"] for k in ("model", "persistence", "climatology"))
    replace_between(os.path.join(HERE, "README.md"), "classifier-table", [
        "| | accuracy | Brier score | log loss |",
        "|---|---|---|---|",
        f"| `{RAIN['name']}` | {m['accuracy']:.3f} | {m['brier']:.3f} | {m['logLoss']:.3f} |",
        f"| persistence | {p['accuracy']:.3f} | {p['brier']:.3f} | – (certain and sometimes wrong) |",
        f"| climatology | {c['accuracy']:.3f} | {c['brier']:.3f} | {c['logLoss']:.3f} |",
    ])


# A classification head: will tomorrow be wet (any precipitation) or dry? Same
# four daily features, one GRU step per day, two logits per step (softmax in
# tidecast, so the export stays what PyTorch users ship).
RAIN = dict(name="weather-rain", kind="gru", hidden=16, layers=1, epochs=40)
RAIN_LABELS = ["dry", "wet"]


def wet_tomorrow(vals):
    """Class index per day: 1 when the next day has precipitation > 0; NaN on the last day."""
    y = np.full((len(vals), 1), np.nan)
    y[:-1, 0] = (vals[1:, FEATURES.index("precipitation")] > 0).astype(np.float64)
    return y


def class_metrics(p_wet, actual):
    """Accuracy (argmax), log loss and Brier score of P(wet) against 0/1 actuals."""
    p = np.clip(p_wet, 1e-7, 1 - 1e-7)
    return {
        "accuracy": round(float(((p_wet > 0.5) == (actual == 1)).mean()), 4),
        "logLoss": round(float(-(actual * np.log(p) + (1 - actual) * np.log(1 - p)).mean()), 4),
        "brier": round(float(((p_wet - actual) ** 2).mean()), 4),
        "n": int(len(actual)),
    }


def train_classifier():
    series = load_series()
    cities, split, f_mean, f_std, xs_all = standardised(series)
    spec = RAIN
    name = spec["name"]
    ys_all = {c: wet_tomorrow(series[c][1]) for c in cities}
    ys_train = []
    for c in cities:
        y = ys_all[c][: split[c]].copy()
        y[split[c] - 1 :] = np.nan  # the last training day's label is a held-out day
        ys_train.append(y)
    seed_everything()
    model = Stateful(spec["kind"], spec["hidden"], spec["layers"], outputs=len(RAIN_LABELS))
    train_stateful(model, [xs_all[c][: split[c]] for c in cities], ys_train, spec["epochs"], loss_fn=masked_cross_entropy)
    model.eval()

    # Held out: each city's whole series (state warmed on the training years), scored on 2015 days
    # whose next day is in 2015. Baselines: "tomorrow like today", and the training period's wet rate.
    wet_rate = float(np.nanmean(np.concatenate(ys_train)))
    heldout, p_all, act_all, today_all = {}, [], [], []
    with torch.no_grad():
        for c in cities:
            logits = model(torch.tensor(xs_all[c], dtype=torch.float32).unsqueeze(0), *zero_state(model, 1))[0][0]
            probs = torch.softmax(logits, dim=-1).numpy().astype(np.float64)
            s = split[c]
            heldout[c] = {"dates": series[c][0][s:], "probabilities": [[float(v) for v in r] for r in probs[s:]]}
            known = ~np.isnan(ys_all[c][s:, 0])
            p_all.append(probs[s:, 1][known])
            act_all.append(ys_all[c][s:, 0][known])
            today_all.append((series[c][1][s:, FEATURES.index("precipitation")] > 0).astype(np.float64)[known])
    p_wet, actual, today = np.concatenate(p_all), np.concatenate(act_all), np.concatenate(today_all)
    metrics_test = {
        "model": {"rain@1": class_metrics(p_wet, actual)},
        "persistence": {"rain@1": class_metrics(today, actual)},
        "climatology": {"rain@1": class_metrics(np.full(len(actual), wet_rate), actual)},
    }
    with open(os.path.join(HERE, "fixtures", f"{name}.heldout.json"), "w") as f:
        json.dump({"model": name, "from": TEST_START, "warmupFrom": series[cities[0]][0][0], "labels": RAIN_LABELS,
                   "streams": heldout}, f, separators=(",", ":"))
        f.write("\n")
    path, inputs, outputs = export(model, name, spec["kind"])
    card = {
        "$schema": "./model-card.schema.json",
        "name": name,
        "description": (
            f"GRU ({spec['layers']} layer(s), hidden {spec['hidden']}) classifying tomorrow as dry or wet "
            "(any precipitation) from daily weather: many-to-one, one label with its probability per day."
        ),
        "architecture": {"cell": spec["kind"], "layers": spec["layers"], "hidden": spec["hidden"], "bidirectional": False},
        "mode": "stateful",
        "window": None,
        "stepSeconds": STEP_SECONDS,
        "features": [{"name": f, "unit": UNITS[f]} for f in FEATURES],
        "targets": [{"name": "rain", "labels": RAIN_LABELS, "scores": "logits",
                     "description": "wet: precipitation > 0 mm on the target day"}],
        "horizons": [1],
        "outputLayout": "horizon-major",
        "scaler": {"features": {"mean": f_mean.tolist(), "std": f_std.tolist()}},
        "signature": signature(inputs, outputs),
        "provenance": {**provenance(series), "trainWetRate": round(wet_rate, 4)},
        "metrics": {"test": metrics_test},
        "sha256": sha256(path),
    }
    with open(os.path.join(HERE, f"{name}.card.json"), "w") as f:
        json.dump(card, f, indent=2, ensure_ascii=False)
        f.write("\n")

    # Reference fixture: the first 60 held-out Seattle days, PyTorch's logits and final state.
    c, n = "Seattle", 60
    s = split[c]
    x_ref = torch.tensor(xs_all[c][s : s + n], dtype=torch.float32).unsqueeze(0)
    with torch.no_grad():
        out, *states = model(x_ref, *zero_state(model, 1))
    write_reference(name, series, c, s, n, x_ref, {
        "outputs": [f32list(r) for r in out[0].numpy()],
        "finalStates": {o: f32list(st.numpy()) for o, st in zip(outputs[1:], states)},
    })
    m = metrics_test
    print(f"{name}: accuracy {m['model']['rain@1']['accuracy']:.3f} (persistence {m['persistence']['rain@1']['accuracy']:.3f}, "
          f"climatology {m['climatology']['rain@1']['accuracy']:.3f}), brier {m['model']['rain@1']['brier']:.3f} "
          f"(persistence {m['persistence']['rain@1']['brier']:.3f}, climatology {m['climatology']['rain@1']['brier']:.3f})")


if __name__ == "__main__":
    os.makedirs(os.path.join(HERE, "fixtures"), exist_ok=True)
    only = sys.argv[1:]
    if not only or set(only) & set(SPECS):
        main()
        write_metrics_table()
    if not only or RAIN["name"] in only:
        train_classifier()
        write_classifier_table()

#!/usr/bin/python3
"""Build the small ONNX graphs the engine tests need (test/fixtures/models/).

They are not forecasters: each one exercises a signature or failure the engine
must handle. Built with the onnx helper (and one PyTorch export), seeded, so
`npm run models` regenerates them byte for byte.
"""
import json
import os
import warnings

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(os.path.dirname(HERE), "test", "fixtures", "models")
OPSET = 14
warnings.filterwarnings("ignore", category=UserWarning)
torch.set_num_threads(1)


def save(graph, name):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="tidecast-test-models")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, os.path.join(OUT, name))


def f32(name, dims):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def rnn_weights(rng, gates, H, F, w=0.5):
    """W, R, B of a one-direction ONNX RNN operator with `gates` gates, drawn in that order."""
    W = rng.uniform(-w, w, (1, gates * H, F)).astype(np.float32)
    R = rng.uniform(-w, w, (1, gates * H, H)).astype(np.float32)
    B = rng.uniform(-0.1, 0.1, (1, 2 * gates * H)).astype(np.float32)
    return [numpy_helper.from_array(W, "W"), numpy_helper.from_array(R, "R"), numpy_helper.from_array(B, "B")]


def nan_accumulator():
    """Stateful: state += step input; output = sqrt(5 - state). Past 5 the output is NaN.

    input [batch, time, 2] (batch-first), state_in/state_out [1, batch, 2].
    Meant for one step per call: the state adds the sum over the time axis.
    """
    nodes = [
        helper.make_node("Transpose", ["input"], ["x_tm"], perm=[1, 0, 2]),
        helper.make_node("ReduceSum", ["x_tm", "axis0"], ["x_sum"], keepdims=1),
        helper.make_node("Add", ["state_in", "x_sum"], ["state_out"]),
        helper.make_node("Sub", ["five", "state_out"], ["room"]),
        helper.make_node("Sqrt", ["room"], ["root"]),
        helper.make_node("Transpose", ["root"], ["output"], perm=[1, 0, 2]),
    ]
    graph = helper.make_graph(
        nodes, "nan_accumulator",
        [f32("input", ["batch", "time", 2]), f32("state_in", [1, "batch", 2])],
        [f32("output", ["batch", 1, 2]), f32("state_out", [1, "batch", 2])],
        [numpy_helper.from_array(np.array(5.0, dtype=np.float32), "five"),
         numpy_helper.from_array(np.array([0], dtype=np.int64), "axis0")],
    )
    save(graph, "nan-accumulator.onnx")


def gru_time_major():
    """A plain ONNX GRU operator: X [seq, batch, 3] time-major, initial_h <-> Y_h."""
    rng = np.random.RandomState(7)
    H, F = 4, 3
    weights = rnn_weights(rng, 3, H, F)
    node = helper.make_node("GRU", ["X", "W", "R", "B", "", "initial_h"], ["Y", "Y_h"],
                            hidden_size=H, linear_before_reset=1)
    graph = helper.make_graph(
        [node], "gru_time_major",
        [f32("X", ["seq", "batch", F]), f32("initial_h", [1, "batch", H])],
        [f32("Y", ["seq", 1, "batch", H]), f32("Y_h", [1, "batch", H])],
        weights,
    )
    save(graph, "gru-time-major.onnx")


def unpaired_state():
    """h0 is [1, batch, 4] but hn is [1, batch, 5]: no output can carry the state."""
    rng = np.random.RandomState(11)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["h0", "Wh"], ["hn"]),
         helper.make_node("MatMul", ["input", "Wx"], ["output"])],
        "unpaired_state",
        [f32("input", ["batch", "time", 3]), f32("h0", [1, "batch", 4])],
        [f32("output", ["batch", "time", 2]), f32("hn", [1, "batch", 5])],
        [numpy_helper.from_array(rng.randn(4, 5).astype(np.float32), "Wh"),
         numpy_helper.from_array(rng.randn(3, 2).astype(np.float32), "Wx")],
    )
    save(graph, "unpaired-state.onnx")


class Batch1Lstm(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.LSTM(3, 8, 1, batch_first=True)
        self.head = torch.nn.Linear(8, 2)

    def forward(self, x, h, c):
        y, (hn, cn) = self.rnn(x, (h, c))
        return self.head(y), hn, cn


def batch1_lstm():
    """An LSTM exported with a fixed batch of 1 and state_in_*/state_out_* names, no card."""
    torch.manual_seed(3)
    m = Batch1Lstm().eval()
    args = (torch.zeros(1, 2, 3), torch.zeros(1, 1, 8), torch.zeros(1, 1, 8))
    torch.onnx.export(
        m, args, os.path.join(OUT, "batch1-lstm.onnx"),
        input_names=["x", "state_in_h", "state_in_c"],
        output_names=["y", "state_out_h", "state_out_c"],
        dynamic_axes={"x": {1: "time"}, "y": {1: "time"}}, opset_version=OPSET,
    )


def keras_style_lstm():
    """A plain ONNX LSTM operator under Keras/tf2onnx-style names, with a many-to-one
    [batch, horizons] head: input_1 [seq, batch, 4] time-major, states input_2/input_3
    [1, batch, 8] <-> lstm_h/lstm_c, output dense [batch, 3]. The two states share a
    shape and their names pair with nothing, so it needs an explicit signature."""
    rng = np.random.RandomState(11)
    H, F, K = 8, 4, 3
    weights = rnn_weights(rng, 4, H, F, w=0.4)
    D = rng.uniform(-0.5, 0.5, (H, K)).astype(np.float32)
    nodes = [
        helper.make_node("LSTM", ["input_1", "W", "R", "B", "", "input_2", "input_3"], ["Y", "lstm_h", "lstm_c"], hidden_size=H),
        helper.make_node("Squeeze", ["lstm_h", "axes0"], ["last"]),
        helper.make_node("MatMul", ["last", "D"], ["dense"]),
    ]
    graph = helper.make_graph(
        nodes, "keras_style_lstm",
        [f32("input_1", ["seq", "batch", F]), f32("input_2", [1, "batch", H]), f32("input_3", [1, "batch", H])],
        [f32("dense", ["batch", K]), f32("lstm_h", [1, "batch", H]), f32("lstm_c", [1, "batch", H])],
        weights + [numpy_helper.from_array(D, "D"), numpy_helper.from_array(np.array([0], dtype=np.int64), "axes0")],
    )
    save(graph, "keras-style-lstm.onnx")


def flat_horizons_gru():
    """A GRU whose head emits every horizon x target of the last step at once:
    x [batch, time, 3] batch-first, h0 [1, batch, 4] <-> hn, y [batch, 1, 6]."""
    rng = np.random.RandomState(13)
    H, F, K = 4, 3, 6
    weights = rnn_weights(rng, 3, H, F)
    D = rng.uniform(-0.5, 0.5, (H, K)).astype(np.float32)
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
        helper.make_node("GRU", ["xt", "W", "R", "B", "", "h0"], ["Y", "hn"], hidden_size=H, linear_before_reset=1),
        helper.make_node("Transpose", ["hn"], ["last"], perm=[1, 0, 2]),
        helper.make_node("MatMul", ["last", "D"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "flat_horizons_gru",
        [f32("x", ["batch", "time", F]), f32("h0", [1, "batch", H])],
        [f32("y", ["batch", 1, K]), f32("hn", [1, "batch", H])],
        weights + [numpy_helper.from_array(D, "D")],
    )
    save(graph, "flat-horizons-gru.onnx")


def window_anomaly_gru():
    """A many-to-one classifier over a fixed window, ending in a softmax (probabilities, not logits):
    x [batch, 8, 3] batch-first -> GRU (no state input: windowed) -> last hidden -> 2 classes -> Softmax,
    y [batch, 2]. Its card (written beside it) declares labels normal/anomaly with scores "probabilities"."""
    rng = np.random.RandomState(17)
    H, F, T, K = 4, 3, 8, 2
    weights = rnn_weights(rng, 3, H, F)
    D = rng.uniform(-2, 2, (H, K)).astype(np.float32)
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
        helper.make_node("GRU", ["xt", "W", "R", "B"], ["Y", "hn"], hidden_size=H, linear_before_reset=1),
        helper.make_node("Reshape", ["hn", "flat"], ["last"]),
        helper.make_node("MatMul", ["last", "D"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["y"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "window_anomaly_gru",
        [f32("x", ["batch", T, F])],
        [f32("y", ["batch", K])],
        weights + [numpy_helper.from_array(D, "D"), numpy_helper.from_array(np.array([-1, H], dtype=np.int64), "flat")],
    )
    save(graph, "window-anomaly-gru.onnx")
    card = {
        "name": "window-anomaly-gru",
        "description": "Test graph: a windowed GRU classifier whose graph ends in a softmax.",
        "mode": "windowed",
        "window": T,
        "stepSeconds": 60,
        "features": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
        "targets": [{"name": "state", "labels": ["normal", "anomaly"], "scores": "probabilities"}],
        "horizons": [0],
    }
    with open(os.path.join(OUT, "window-anomaly-gru.card.json"), "w") as f:
        json.dump(card, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    nan_accumulator()
    gru_time_major()
    unpaired_state()
    batch1_lstm()
    keras_style_lstm()
    flat_horizons_gru()
    window_anomaly_gru()
    print("test models written to", os.path.relpath(OUT))

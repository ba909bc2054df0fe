"""The LSTM cell from its equations equals keras.layers.LSTM with the same weights."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from app.lstm_cell import (LSTMWeights, bidirectional_sequence, cell_problem, lstm_sequence, lstm_weights,  # noqa: E402
                           sigmoid, split_gates)

TOL = 1e-5
BATCH, STEPS, DIM, UNITS = 3, 7, 5, 4


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).normal(size=(BATCH, STEPS, DIM)).astype(np.float32)


def _randomise(layer, seed):
    """Random weights (not the initial ones: a zero bias would hide a gate-order mistake)."""
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(scale=0.5, size=w.shape).astype(np.float32) for w in layer.get_weights()])
    return layer


def _keras_lstm(x, return_sequences, go_backwards=False, seed=1):
    layer = keras.layers.LSTM(UNITS, return_sequences=return_sequences, go_backwards=go_backwards)
    layer.build(x.shape)
    return _randomise(layer, seed)


@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_numpy_cell_equals_keras_lstm(x, return_sequences, go_backwards):
    layer = _keras_lstm(x, return_sequences, go_backwards)
    expected = np.asarray(layer(x))
    got, rec = lstm_sequence(x, LSTMWeights.from_list(layer.get_weights()), return_sequences, go_backwards)
    assert rec is None
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=TOL)


@pytest.mark.parametrize("return_sequences", [False, True])
def test_keras_layer_from_scratch_equals_keras_lstm(x, return_sequences):
    from training.layers import lstm_from_scratch_layer

    LSTMFromScratch = lstm_from_scratch_layer()

    layer = _keras_lstm(x, return_sequences)
    mine = LSTMFromScratch(UNITS, return_sequences=return_sequences)
    mine.build(x.shape)
    mine.set_weights(layer.get_weights())
    np.testing.assert_allclose(np.asarray(mine(x)), np.asarray(layer(x)), atol=TOL)


@pytest.mark.parametrize("return_sequences", [False, True])
def test_bidirectional_equals_keras(x, return_sequences):
    from training.layers import lstm_from_scratch_layer

    LSTMFromScratch = lstm_from_scratch_layer()

    bi = keras.layers.Bidirectional(keras.layers.LSTM(UNITS, return_sequences=return_sequences))
    bi.build(x.shape)
    _randomise(bi, 2)
    expected = np.asarray(bi(x))
    weights = bi.get_weights()
    got, _ = bidirectional_sequence(x, LSTMWeights.from_list(weights[:3]), LSTMWeights.from_list(weights[3:]),
                                    return_sequences)
    np.testing.assert_allclose(got, expected, atol=TOL)
    mine = keras.layers.Bidirectional(LSTMFromScratch(UNITS, return_sequences=return_sequences))
    mine.build(x.shape)
    mine.set_weights(weights)
    np.testing.assert_allclose(np.asarray(mine(x)), expected, atol=TOL)


def test_record_obeys_the_equations(x):
    layer = _keras_lstm(x, True, seed=3)
    w = LSTMWeights.from_list(layer.get_weights())
    hs, rec = lstm_sequence(x, w, return_sequences=True, record=True)
    np.testing.assert_allclose(rec["h"], hs)
    c_prev = np.concatenate([np.zeros_like(rec["c"][:, :1]), rec["c"][:, :-1]], axis=1)
    np.testing.assert_allclose(rec["c"], rec["f"] * c_prev + rec["i"] * rec["g"], atol=1e-6)
    np.testing.assert_allclose(rec["h"], rec["o"] * np.tanh(rec["c"]), atol=1e-6)
    for gate in "ifo":
        assert ((rec[gate] > 0) & (rec[gate] < 1)).all()


def test_gate_order_is_i_f_c_o():
    # A pre-activation that is large only in the second quarter opens only the forget gate.
    units = 2
    z = np.zeros((1, 4 * units))
    z[0, units:2 * units] = 50.0
    i, f, g, o = split_gates(z, units)
    assert np.allclose(f, 1.0) and np.allclose(i, 0.5) and np.allclose(o, 0.5) and np.allclose(g, 0.0)


def test_layer_from_scratch_in_a_saved_model(tmp_path, x):
    from training.layers import lstm_from_scratch_layer

    LSTMFromScratch = lstm_from_scratch_layer()

    inputs = keras.Input((STEPS, DIM))
    model = keras.Model(inputs, LSTMFromScratch(UNITS, name="scratch")(inputs))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), atol=TOL)


def test_rejects_wrong_shapes():
    with pytest.raises(ValueError):
        LSTMWeights.from_list([np.zeros((3, 8)), np.zeros((3, 8)), np.zeros(8)])
    w = LSTMWeights.from_list([np.zeros((3, 8)), np.zeros((2, 8)), np.zeros(8)])
    with pytest.raises(ValueError):
        lstm_sequence(np.zeros((5, 3)), w)


def test_fast_loop_equals_the_readable_step(x):
    from app.lstm_cell import lstm_step

    layer = _keras_lstm(x, True, seed=4)
    w = LSTMWeights.from_list(layer.get_weights())
    _, rec = lstm_sequence(x, w, return_sequences=True, record=True)
    h = c = np.zeros((BATCH, UNITS), np.float32)
    for t in range(STEPS):
        values = lstm_step(x[:, t] @ w.kernel + w.bias, h, c, w)
        for key, value in zip(("i", "f", "g", "o", "c", "h"), values):
            np.testing.assert_allclose(rec[key][:, t], value, atol=1e-6)
        c, h = values[4], values[5]


def test_one_tanh_gates_are_the_sigmoid_bit_for_bit():
    z = np.random.default_rng(5).normal(scale=4, size=(3, 4 * UNITS)).astype(np.float32)
    i, f, g, o = split_gates(z, UNITS)
    for got, columns in ((i, slice(0, UNITS)), (f, slice(UNITS, 2 * UNITS)), (o, slice(3 * UNITS, None))):
        np.testing.assert_array_equal(got, sigmoid(z[:, columns]))
    np.testing.assert_array_equal(g, np.tanh(z[:, 2 * UNITS:3 * UNITS]))


@pytest.mark.parametrize("kwargs", [{"activation": "relu"}, {"recurrent_activation": "hard_sigmoid"},
                                    {"stateful": True}, {"return_state": True}])
def test_the_cell_refuses_what_it_does_not_compute(x, kwargs):
    layer = keras.layers.LSTM(UNITS, **kwargs)
    layer.build(x.shape)
    assert cell_problem(layer.get_config())
    with pytest.raises(ValueError, match=layer.name):
        lstm_weights(layer.get_config(), layer.get_weights())
    plain = _keras_lstm(x, False)
    assert cell_problem(plain.get_config()) is None
    np.testing.assert_array_equal(lstm_weights(plain.get_config(), plain.get_weights()).kernel, plain.get_weights()[0])

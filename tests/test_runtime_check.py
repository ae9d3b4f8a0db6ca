"""The input check in front of every ONNX Runtime call (onnxship/runtime.py OnnxModel.check): its
one-pass fast path for finite float32 rows, and the detailed path for everything else."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from onnxship.runtime import InputError, OnnxModel

FEATURES = 4


def doubling_model(allow_nan: bool = True) -> OnnxModel:
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "x"], ["y"])],
        "double",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", FEATURES])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["rows", FEATURES])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    return OnnxModel(model.SerializeToString(), allow_nan=allow_nan)


def test_finite_float32_rows_pass_as_they_are():
    rows = np.arange(8, dtype=np.float32).reshape(2, FEATURES)
    checked = doubling_model().check(rows)
    assert checked is rows  # no copy: the form serving builds and the benchmark feeds
    np.testing.assert_array_equal(checked, rows)
    np.testing.assert_array_equal(doubling_model().run(rows)["y"], rows * 2)


def test_float32_rows_of_another_width_are_refused_by_name():
    with pytest.raises(InputError, match=f"input has 3 features, the model expects {FEATURES}"):
        doubling_model().check(np.zeros((1, 3), dtype=np.float32))


def test_rows_that_are_not_contiguous_are_checked_and_made_contiguous():
    wide = np.arange(16, dtype=np.float32).reshape(2, 2 * FEATURES)
    strided = wide[:, ::2]
    checked = doubling_model().check(strided)
    assert checked.flags.c_contiguous
    np.testing.assert_array_equal(checked, strided)


def test_large_finite_values_whose_squares_overflow_are_accepted():
    """The fast path's sum of squares overflows past |x| ~ 1.8e19: such rows take the detailed
    path, which accepts every finite float32."""
    rows = np.full((1, FEATURES), 3.0e38, dtype=np.float32)
    np.testing.assert_array_equal(doubling_model().check(rows), rows)


@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_infinity_is_refused(bad):
    rows = np.zeros((3, FEATURES), dtype=np.float32)
    rows[2, 1] = bad
    with pytest.raises(InputError, match=r"input contains \+/-inf"):
        doubling_model().check(rows)


def test_nan_is_refused_only_by_a_model_that_takes_no_missing_values():
    rows = np.zeros((2, FEATURES), dtype=np.float32)
    rows[1, 3] = np.nan
    assert np.isnan(doubling_model(allow_nan=True).check(rows)[1, 3])
    with pytest.raises(InputError, match="does not accept missing values"):
        doubling_model(allow_nan=False).check(rows)


def test_float64_beyond_the_float32_range_is_refused_without_echoing_it():
    rows = np.zeros((1, FEATURES))
    rows[0, 0] = 1.2345e300
    with pytest.raises(InputError, match="beyond the float32 range") as err:
        doubling_model().check(rows)
    assert "1.2345" not in str(err.value)


def test_float64_rows_are_converted_to_float32_on_the_fast_path():
    rows = np.linspace(-5.0, 5.0, 2 * FEATURES).reshape(2, FEATURES)
    checked = doubling_model().check(rows)
    assert checked.dtype == np.float32 and checked.flags.c_contiguous
    np.testing.assert_array_equal(checked, rows.astype(np.float32))


def test_float64_whose_squares_overflow_float32_is_accepted_and_converted():
    """1e30 is a float32 but its square is not: the detailed path accepts it."""
    rows = np.full((1, FEATURES), 1e30)
    np.testing.assert_array_equal(doubling_model().check(rows), rows.astype(np.float32))


@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_float64_infinity_and_nan_take_the_detailed_path(bad):
    rows = np.zeros((2, FEATURES))
    rows[1, 0] = bad
    if np.isnan(bad):
        with pytest.raises(InputError, match="does not accept missing values"):
            doubling_model(allow_nan=False).check(rows)
        assert np.isnan(doubling_model(allow_nan=True).check(rows)[1, 0])
    else:
        with pytest.raises(InputError, match=r"input contains \+/-inf"):
            doubling_model().check(rows)


def test_integer_rows_are_converted():
    rows = np.arange(2 * FEATURES, dtype=np.int64).reshape(2, FEATURES)
    checked = doubling_model().check(rows)
    assert checked.dtype == np.float32
    np.testing.assert_array_equal(checked, rows.astype(np.float32))


def test_where_warnings_are_errors_an_overflow_is_still_refused_by_name():
    """numpy warns of the cast's and the dot's overflow; an application (or pytest -W error)
    that makes warnings errors still gets the InputError, not a RuntimeWarning."""
    import warnings

    rows = np.zeros((1, FEATURES))
    rows[0, 0] = 1e300
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InputError, match="beyond the float32 range"):
            doubling_model().check(rows)
        big = np.full((1, FEATURES), 1e30)  # a float32, whose square overflows: accepted
        np.testing.assert_array_equal(doubling_model().check(big), big.astype(np.float32))


def test_fortran_ordered_float64_rows_come_out_c_contiguous_float32():
    rows = np.asfortranarray(np.arange(2 * FEATURES, dtype=np.float64).reshape(2, FEATURES))
    checked = doubling_model().check(rows)
    assert checked.dtype == np.float32 and checked.flags.c_contiguous
    np.testing.assert_array_equal(checked, rows.astype(np.float32))


# a few values are summed in Python, more in one float32 dot (onnxship.runtime.SMALL_CHECK):
# every case holds on both paths
PATHS = {"python_sum": 1, "float32_dot": 40}


@pytest.mark.parametrize("rows", PATHS.values(), ids=PATHS.keys())
@pytest.mark.parametrize(
    ("dtype", "value", "refusal"),
    [
        (np.float32, np.inf, r"input contains \+/-inf"),
        (np.float32, -np.inf, r"input contains \+/-inf"),
        (np.float32, np.nan, "does not accept missing values"),
        (np.float64, 1e300, "beyond the float32 range"),
        (np.float32, 3.0e38, None),  # finite float32 at the limit: its sum and square overflow
        (np.float64, 1e30, None),
        (np.float64, -3.0e38, None),
    ],
)
def test_both_check_paths_refuse_and_accept_alike(rows, dtype, value, refusal):
    from onnxship.runtime import SMALL_CHECK

    assert (rows * FEATURES <= SMALL_CHECK) == (rows == PATHS["python_sum"])
    data = np.ones((rows, FEATURES), dtype=dtype)
    data[-1, 0] = value
    data[0, -1] = value  # twice: a sum of two values at the float32 limit overflows float32
    model = doubling_model(allow_nan=False)
    if refusal:
        with pytest.raises(InputError, match=refusal):
            model.check(data)
    else:
        np.testing.assert_array_equal(model.check(data), data.astype(np.float32))
        np.testing.assert_array_equal(model.run(data)["y"], data.astype(np.float32) * 2)


def test_a_feed_of_the_one_input_is_served_by_the_call_the_benchmark_times():
    """Serving calls run_feed; for a graph of one input on the CPU it is `run`'s C++ session call
    (what the benchmark times), answers alike, and a feed ONNX Runtime cannot take still fails."""
    model = doubling_model()
    rows = np.arange(8, dtype=np.float32).reshape(2, 4)
    served = model.run_feed({model.input_name: rows})
    np.testing.assert_array_equal(served[0], model.run(rows)[model.output_names[0]])
    np.testing.assert_array_equal(served[0], rows * 2)

    def public_call(*_args, **_kwargs):
        raise AssertionError("the public InferenceSession.run was called")

    model.session.run = public_call  # the C++ session answers alone
    np.testing.assert_array_equal(model.run_feed({model.input_name: rows})[0], rows * 2)
    with pytest.raises(Exception, match=r"(?i)type"):
        model.run_feed({model.input_name: rows.astype(np.float64)})

"""Input sets from command-line vectors."""

from __future__ import annotations

import numpy as np
import pytest

from nnbisim.core.errors import SpecError
from nnbisim.specs.regions import ball, bounds, parse_vector
from nnbisim.specs.sets import Box


def test_parse_vector():
    np.testing.assert_array_equal(parse_vector("0.1, -2,3e-2"), [0.1, -2.0, 0.03])
    np.testing.assert_array_equal(parse_vector("[1,2]", "--lower", expected=2), [1.0, 2.0])


@pytest.mark.parametrize("text, message", [
    ("", "empty entry"),
    ("1,,2", "empty entry"),
    ("1,a,2", "entry 2 \\('a'\\) is not a number"),
    ("1,nan", "entry 2 \\('nan'\\) is not finite"),
    ("1,2,3", "--lower: has 3 values but 2 are needed"),
])
def test_parse_vector_errors(text, message):
    with pytest.raises(SpecError, match=message):
        parse_vector(text, "--lower", expected=2)


def test_bounds_and_ball():
    (box,) = bounds([0, 1], [1, 2]).boxes
    np.testing.assert_array_equal(box.upper, [1.0, 2.0])
    with pytest.raises(SpecError, match="upper has 3 values but 2"):
        bounds([0, 1], [1, 2, 3], dim=2)
    with pytest.raises(SpecError, match="box is empty"):
        bounds([0, 3], [1, 2])
    (b,) = ball([0.5, 0.9], 0.2, domain=Box([0, 0], [1, 1])).boxes
    np.testing.assert_allclose(b.lower, [0.3, 0.7])
    np.testing.assert_allclose(b.upper, [0.7, 1.0])
    (b,) = ball([0.5, 0.5], [0.1, 0.0]).boxes
    np.testing.assert_allclose(b.upper, [0.6, 0.5])
    with pytest.raises(SpecError, match="radius has 3 values"):
        ball([0.5, 0.5], [0.1, 0.1, 0.1])
    with pytest.raises(SpecError, match="outside the domain at input 1"):
        ball([0.5, 3.0], 0.1, domain=Box([0, 0], [1, 1]))
    with pytest.raises(SpecError, match="radius must be"):
        ball([0.5], -1.0)

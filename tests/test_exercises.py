"""The lessons' exercise checks pass the reference solutions, fail wrong answers with a useful
message, and say "not done yet" (without failing) while the learner's body is still empty."""

import numpy as np
import pytest

from overfeat_np import exercises as ex


def _open(*args):
    raise NotImplementedError


@pytest.mark.parametrize("check, solution", [(ex.check_im2col, ex.solution_im2col),
                                             (ex.check_maxpool_backward, ex.solution_maxpool_backward),
                                             (ex.check_match_score, ex.solution_match_score)])
def test_solutions_pass_and_open_exercises_are_not_failures(check, solution):
    assert check(solution).startswith("correct")
    assert check(_open) == ex.NOT_DONE


def test_wrong_answers_fail_with_a_hint():
    def batch_first(x, kh, kw, stride=1, pad=0):  # right numbers, (n, oh, ow) column order
        cols = ex.solution_im2col(x, kh, kw, stride, pad)
        n = x.shape[0]
        return cols.reshape(cols.shape[0], -1, n).transpose(0, 2, 1).reshape(cols.shape[0], -1)

    with pytest.raises(AssertionError, match="another order"):
        ex.check_im2col(batch_first)

    def spread(dout, x, k):  # the gradient spread over the whole window instead of its maximum
        return np.repeat(np.repeat(dout, k, axis=2), k, axis=3)[:, :, :x.shape[2], :x.shape[3]] / k**2

    with pytest.raises(AssertionError, match="wrong gradient|has shape"):
        ex.check_maxpool_backward(spread)

    with pytest.raises(AssertionError, match="expected"):
        ex.check_match_score(lambda a, b: 1.0 - 0.5)

"""erpack.experiments.stats: mean and sd, paired bootstrap, decile pooling."""

import pytest

from erpack.experiments.stats import correct_string, decile_means, mean_sd, paired_bootstrap


def test_paired_bootstrap_resamples_documents_shared_by_the_runs_of_a_decile():
    assert paired_bootstrap([(9, "1" * 50, "1" * 50)]) == (0.0, 0.0)
    lo, hi = paired_bootstrap([(9, "10" * 100, "01" * 100)])
    assert lo < 0.0 < hi and hi - lo > 10.0  # every document disagrees: a wide interval around 0
    lo, hi = paired_bootstrap([(0, "1110", "1111"), (1, "1100", "1100")])
    assert -50.0 <= lo < hi <= 0.0  # decile 0 can only lose (a resample may draw its loss 4 times), decile 1 tie
    with pytest.raises(ValueError, match="decile 9: 3 recycled against 2"):
        paired_bootstrap([(9, "111", "11")])


def test_mean_sd_population_or_sample():
    assert mean_sd([0.8, 0.7]) == (pytest.approx(0.75), pytest.approx(0.05))
    assert mean_sd([0.8, 0.7], ddof=1) == (pytest.approx(0.75), pytest.approx(0.0707107))
    assert mean_sd([0.8], ddof=1) == (pytest.approx(0.8), 0.0)


def test_deciles_pool_as_one_sample_each():
    means, pooled = decile_means([(1, 2.0), (0, -25.0), (1, 0.0)])
    assert means == {0: -25.0, 1: 1.0} and list(means) == [0, 1]
    assert pooled == pytest.approx(-12.0)
    assert decile_means([]) == ({}, None)


def test_correct_string_marks_each_right_prediction():
    assert correct_string([1, 0, 2], [1, 1, 2]) == "101"

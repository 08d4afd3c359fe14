"""Random genotypes: valid, two distinct inputs per node, uniform ops and inputs, seeded."""
import collections
import itertools
import math

import numpy as np
import pytest

from ubnas_tf.errors import UserError
from ubnas_tf.search_space import get_space
from ubnas_tf.search_space.genotype import Genotype
from ubnas_tf.search_space.sampling import random_genotype, sampleable_ops

SPACE = get_space("binary")
OPS = [op for op in SPACE.primitives if op != "none"]


def _samples(count, nodes=4, seed=0):
    rng = np.random.default_rng(seed)
    return [random_genotype("binary", nodes, rng) for _ in range(count)]


def test_every_sample_is_a_valid_derivation():
    for genotype in _samples(200):
        # A JSON round trip runs the same checks as a genotype file from tools/search.py.
        assert Genotype.from_dict(genotype.to_dict()) == genotype
        assert genotype.normal_concat == genotype.reduce_concat == (2, 3, 4, 5)
        for cell in (genotype.normal, genotype.reduce):
            assert len(cell) == 8
            for node in range(4):
                (op_a, in_a), (op_b, in_b) = cell[2 * node: 2 * node + 2]
                assert in_a != in_b, cell
                assert 0 <= in_a < node + 2 and 0 <= in_b < node + 2
                assert op_a != "none" and op_b != "none"


def test_op_frequencies_are_uniform():
    """Over 1,000 genotypes (16,000 edges) each of the 7 ops' counts is Binomial(n, 1/7):
    every count within 5 standard deviations of n/7 (a false alarm has odds below 1e-5), and
    Pearson's chi-square with 6 degrees of freedom below 30 (p < 1e-4)."""
    counts = collections.Counter(op for g in _samples(1000) for op, _ in g.normal + g.reduce)
    n = sum(counts.values())
    p = 1.0 / len(OPS)
    assert set(counts) == set(OPS)
    sigma = math.sqrt(n * p * (1 - p))
    for op in OPS:
        assert abs(counts[op] - n * p) < 5 * sigma, (op, counts)
    chi2 = sum((counts[op] - n * p) ** 2 / (n * p) for op in OPS)
    assert chi2 < 30.0, counts


def test_input_pairs_are_uniform_per_node():
    """Node i draws its pair uniformly among the C(i+2, 2) pairs of earlier states."""
    genotypes = _samples(1000, seed=1)
    for node in range(4):
        pairs = collections.Counter(
            tuple(sorted((cell[2 * node][1], cell[2 * node + 1][1])))
            for g in genotypes for cell in (g.normal, g.reduce))
        expected = list(itertools.combinations(range(node + 2), 2))
        assert set(pairs) == set(expected)
        n, p = 2000, 1.0 / len(expected)
        sigma = math.sqrt(n * p * (1 - p))
        for pair in expected:
            assert abs(pairs[pair] - n * p) <= 5 * sigma, (node, pairs)


def test_deterministic_per_seed_and_different_across_seeds():
    assert _samples(5, seed=3) == _samples(5, seed=3)
    assert _samples(5, seed=3) != _samples(5, seed=4)


def test_primitives_restrict_the_vocabulary_and_none_is_never_drawn():
    rng = np.random.default_rng(0)
    genotype = random_genotype("binary", 3, rng, primitives=["none", "bin_conv_3x3"],
                               multiplier=2)
    assert {op for op, _ in genotype.normal + genotype.reduce} == {"bin_conv_3x3"}
    assert genotype.normal_concat == (3, 4)
    assert sampleable_ops("darts") == tuple(op for op in get_space("darts").primitives
                                            if op != "none")


@pytest.mark.parametrize("kwargs", [{"nodes": 0}, {"nodes": 2, "multiplier": 3},
                                    {"nodes": 2, "primitives": ["none"]},
                                    {"nodes": 2, "primitives": ["bin_conv_7x7"]}])
def test_bad_arguments_are_user_errors(kwargs):
    with pytest.raises(UserError):
        random_genotype("binary", rng=np.random.default_rng(0), **kwargs)

"""experiments/pt_reliability.py: the split-half reliability of DARTS-PT's op decisions.

The analysis is checked on score tables whose answer is known: a decision the data determine
(every batch ranks the ops alike) agrees in every split, a coin toss at the chance rate; the
removal scores against an architecture whose probe is a known function of its weights."""
import json

import numpy as np
import pytest

from experiments import pt_reliability as rel
from ubnas_tf.search.architect import Architect

OPS = ("skip_connect", "avg_pool_3x3", "bin_conv_3x3")


def test_choices_take_the_fewest_correct_ties_by_loss_or_the_largest_loss():
    # one edge, three ops: totals (correct, loss) with each op removed
    table = np.array([[[50, 10.0], [48, 11.0], [48, 12.0]],
                      [[40, 30.0], [45, 20.0], [41, 25.0]]])
    np.testing.assert_array_equal(rel.choices(table, "accuracy"), [2, 0])
    np.testing.assert_array_equal(rel.choices(table, "loss"), [2, 0])
    table[0, 0, 1] = 99.0  # the loss picks op 0 of edge 0 now, the accuracy still op 2
    np.testing.assert_array_equal(rel.choices(table, "accuracy"), [2, 0])
    np.testing.assert_array_equal(rel.choices(table, "loss"), [0, 0])


def test_a_decision_every_batch_agrees_on_is_reproduced_by_every_split():
    edges, ops, batches = 6, 7, 20
    scores = np.zeros((edges, ops, batches, 2))
    scores[..., 0] = 60.0
    winner = np.arange(edges) % ops
    scores[np.arange(edges), winner, :, 0] = 50.0  # removing the winner costs 10 per batch
    rng = np.random.default_rng(0)
    assert rel.split_half_agreement(scores, 4, "accuracy", rng, draws=20) == 1.0


def test_pure_noise_agrees_at_the_chance_rate():
    rng = np.random.default_rng(1)
    # Many edges: one fixed data set's split halves are complements, whose agreement varies
    # around the chance rate from one data set to the next.
    edges, ops, batches = 400, 7, 16
    scores = np.stack([rng.binomial(64, 0.7, (edges, ops, batches)).astype(float),
                       rng.gamma(20.0, 1.0, (edges, ops, batches))], axis=-1)
    for criterion in ("accuracy", "loss"):
        agreement = rel.split_half_agreement(scores, 4, criterion, rng, draws=30)
        assert agreement == pytest.approx(1 / ops, abs=0.02)
    with pytest.raises(ValueError, match="two probes of 9 batches"):
        rel.split_half_agreement(scores, 9, "accuracy", rng)


def test_separation_counts_winners_clear_of_the_batch_noise():
    # two edges, two ops, four batches; edge 0: removing op 1 costs 5 +- 1 correct a batch
    # (clear), edge 1: 1 on two batches and -1 on the others, +0.5 net on one (noise)
    scores = np.zeros((2, 2, 4, 2))
    scores[..., 0] = 50.0
    scores[0, 1, :, 0] = [44.0, 45.0, 46.0, 45.0]
    scores[1, 1, :, 0] = [49.0, 51.0, 49.0, 50.5]
    scores[..., 1] = 100.0 - scores[..., 0]  # the loss mirrors the accuracy
    assert rel.separated(scores, "accuracy") == 0.5
    assert rel.separated(scores, "loss") == 0.5
    # by hand, edge 0: gaps 6, 5, 4, 5 -> sum 20 against 2 * std 0.816 * sqrt(4) = 3.27;
    # edge 1: gaps 1, -1, 1, -0.5 -> sum 0.5 against 2 * 0.95 * 2 = 3.8
    scores[1, 1, :, 0] = [47.0, 47.5, 46.5, 47.0]  # now clear too: 12 against 0.82
    scores[..., 1] = 100.0 - scores[..., 0]
    assert rel.separated(scores, "accuracy") == 1.0


class BatchProbe:
    """Each batch's correct count = 100 * sum of importance * op weight over the normal cell's
    edges, minus the batch index; the loss 1000 minus that. Removing op o of edge e costs
    100 * importance[e, o] * w[e, o] on every batch."""

    def __init__(self, importance, batches=3):
        self.importance, self.batches = importance, batches

    def per_batch(self, weights):
        ops, _ = weights["normal"]
        correct = 100.0 * float(np.sum(self.importance * ops))
        return np.array([[correct - b, 1000.0 - correct + b] for b in range(self.batches)])


def test_removal_scores_remove_one_op_at_a_time_from_the_unprojected_supernet():
    architect = Architect(primitives=OPS, nodes=2, multiplier=2, space="binary")
    importance = np.zeros((architect.edges, len(OPS)))
    importance[3, 1] = 1.0
    scores = rel.removal_scores(BatchProbe(importance), architect)
    assert scores["ops"] == list(OPS)
    normal = np.asarray(scores["normal"])
    assert normal.shape == (architect.edges, len(OPS), 3, 2)
    intact = np.asarray(scores["intact"])
    weight = architect.weights_numpy()["normal"][0][3, 1]
    expected = intact[:, 0].copy()
    expected -= 100.0 * weight
    np.testing.assert_allclose(normal[3, 1, :, 0], expected)
    # every other removal leaves the supernet as it was
    others = np.ones(normal.shape[:2], bool)
    others[3, 1] = False
    np.testing.assert_allclose(normal[others][:, :, 0], np.broadcast_to(intact[:, 0], (
        others.sum(), 3)))
    assert rel.choices(normal.sum(axis=2), "accuracy")[3] == 1
    # as committed: the same table, counts as integers, losses to 4 decimals
    kept = np.asarray(rel.compact({"scores": scores})["scores"]["normal"])
    assert kept.shape == normal.shape
    np.testing.assert_array_equal(kept[..., 0], np.round(normal[..., 0]))
    np.testing.assert_allclose(kept[..., 1], normal[..., 1], atol=5e-5)
    assert rel.alpha_choices(architect)["normal"] == list(
        np.argmax(architect.weights_numpy()["normal"][0], axis=1))


def test_report_writes_the_agreement_table(tmp_path):
    rng = np.random.default_rng(2)
    edges, ops, batches = 5, 3, 8

    def unit(key):
        scores = {"ops": list(OPS[:ops]), "intact": np.zeros((batches, 2)).tolist()}
        for cell in ("normal", "reduce"):
            table = np.zeros((edges, ops, batches, 2))
            table[..., 0] = 60.0
            table[:, 0, :, 0] = 50.0  # op 0 wins every edge on every batch
            table[..., 1] = rng.gamma(5.0, 1.0, table.shape[:3])
            table[:, 0, :, 1] = 100.0
            scores[cell] = table.tolist()
        choice = {"normal": [0] * edges, "reduce": [1] + [0] * (edges - 1)}
        return {"key": key, "result": {"batch_images": [64] * batches, "alpha_choice": choice,
                                       "scores": scores, "epoch": 7}}

    (tmp_path / "units").mkdir()
    for key in ("search-0", "search-1"):
        (tmp_path / "units" / f"{key}.json").write_text(json.dumps(unit(key)))
    result = rel.run_report(tmp_path, [2, 8])  # 8 batches cannot be split in two: left out
    assert result["agreement"]["accuracy"] == {"2": 1.0, "4": 1.0}
    assert result["agreement"]["loss"] == {"2": 1.0, "4": 1.0}
    assert result["alphas_vs_whole_half"] == pytest.approx(1 - 2 / 20)
    assert result["whole_half_margin_images"]["median"] == 80.0  # 10 a batch over 8 batches
    assert result["separated_whole_half"]["accuracy"] == 1.0  # the same 10 on every batch
    text = (tmp_path / "results.md").read_text()
    assert "| 4 | 256 | 1.00 | 1.00 |" in text
    # per search: each alone; search-1's alphas pick op 0 on 9 of its 10 edges as well
    assert [row["key"] for row in result["per_search"]] == ["search-0", "search-1"]
    assert result["per_search"][1]["alphas_vs_whole_half"] == pytest.approx(0.9)
    # 8 batches: two probes of 4 (the selection's 8 does not fit), 256 images
    assert "| search-1 | 7 | 256 | 1.00 / 1.00 | 100% / 100% | 90% |" in text


def test_scores_refuse_a_folder_without_search_checkpoints(tmp_path, capsys):
    (tmp_path / "done").mkdir()
    with pytest.raises(SystemExit):
        rel.run_scores(tmp_path / "out", tmp_path, ["done"])
    assert "holds no search checkpoints" in capsys.readouterr().err
    assert not (tmp_path / "out" / "units").exists()  # nothing written
    # a unit cached with another probe size is not mixed in
    units = tmp_path / "out" / "units"
    units.mkdir(parents=True)
    (units / "done.json").write_text(json.dumps({"key": "done",
                                                 "result": {"batch_images": [64] * 16}}))
    rel.run_scores(tmp_path / "out", tmp_path, ["done"], probe_batches=16)  # cached: kept
    rel.run_scores(tmp_path / "out", tmp_path, ["done"])
    with pytest.raises(SystemExit):
        rel.run_scores(tmp_path / "out", tmp_path, ["done"], probe_batches=8)
    assert "scored 16 batches, not --probe_batches 8" in capsys.readouterr().err

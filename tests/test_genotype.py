"""Genotype JSON: round trip, published genotypes, validation errors that name the field."""
import json

import pytest

from ubnas_tf.errors import UserError
from ubnas_tf.search_space.genotype import Genotype, published

# quark0/darts cnn/genotypes.py, DARTS_V2, transcribed by hand.
DARTS_V2_NORMAL = (
    ("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
    ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2),
)
BINARY = {
    "space": "binary",
    "normal": [["bin_conv_3x3", 0], ["skip_connect", 1], ["bin_dil_conv_5x5", 2],
               ["max_pool_3x3", 0]],
    "normal_concat": [2, 3],
    "reduce": [["avg_pool_3x3", 0], ["bin_conv_5x5", 1], ["bin_conv_3x3", 2],
               ["bin_dil_conv_3x3", 1]],
    "reduce_concat": [2, 3],
}


def test_published_genotypes_match_their_papers():
    darts_v2 = published("DARTS_V2")
    assert darts_v2.normal == DARTS_V2_NORMAL
    assert darts_v2.reduce[3] == ("max_pool_3x3", 1) and darts_v2.normal_concat == (2, 3, 4, 5)
    pc_darts = published("PC_DARTS")
    assert pc_darts.normal[:2] == (("sep_conv_3x3", 1), ("skip_connect", 0))
    assert pc_darts.reduce[-1] == ("sep_conv_3x3", 2)
    assert darts_v2.space == pc_darts.space == "darts" and darts_v2.nodes == 4


def test_json_round_trip(tmp_path):
    genotype = Genotype.from_dict(BINARY)
    path = tmp_path / "g.json"
    genotype.save(path)
    assert Genotype.load(path) == genotype
    assert json.loads(path.read_text()) == BINARY
    assert genotype.nodes == 2 and genotype.cell(True)[1] == ("bin_conv_5x5", 1)


def test_darts_repr_is_parsed_without_eval():
    text = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], normal_concat=range(2, 3), "
            "reduce=[('max_pool_3x3', 0), ('skip_connect', 1)], reduce_concat=[2])")
    genotype = Genotype.from_darts_repr(text)
    assert genotype.normal_concat == (2,) and genotype.reduce[1] == ("skip_connect", 1)
    with pytest.raises(UserError):
        Genotype.from_darts_repr("__import__('os').system('echo pwned')")


@pytest.mark.parametrize("change,message", [
    ({"normal": [["bin_conv_3x3", 0]]}, "field 'normal' must be a non-empty list of .* two per node"),
    ({"normal": [["bin_conv_3x3", 0], ["bin_conv_3x3", 2]] * 2}, "field 'normal' edge 1: node 0 can take inputs 0..1, got 2"),
    ({"reduce": [["conv_9x9", 0]] + BINARY["reduce"][1:]}, "field 'reduce' edge 0: unknown op 'conv_9x9'"),
    ({"reduce": [["none", 0]] + BINARY["reduce"][1:]}, "field 'reduce' edge 0 is 'none'"),
    ({"normal_concat": [2, 9]}, "field 'normal_concat': 9 is not a state index in 0..3"),
    ({"space": "ternary"}, "unknown search space 'ternary'"),
    ({"colour": 1}, r"unknown field\(s\) \['colour'\]"),
    ({"normal": [["bin_conv_3x3", "0"]] * 4}, r"edge 0 must be \[op_name, input_index\]"),
])
def test_validation_names_the_bad_field(change, message):
    with pytest.raises(UserError, match=message):
        Genotype.from_dict({**BINARY, **change})


def test_missing_field_and_bad_files(tmp_path):
    with pytest.raises(UserError, match=r"missing field\(s\) \['reduce_concat'\]"):
        Genotype.from_dict({k: v for k, v in BINARY.items() if k != "reduce_concat"})
    broken = tmp_path / "broken.json"
    broken.write_text('{"normal": [')
    with pytest.raises(UserError, match="is neither valid JSON"):
        Genotype.load(broken)
    with pytest.raises(UserError, match="does not exist"):
        Genotype.load(tmp_path / "absent.json")
    with pytest.raises(UserError, match="no published genotype 'DARTS_V9'.*DARTS_V2"):
        published("DARTS_V9")


def test_error_messages_are_one_line():
    with pytest.raises(UserError) as error:
        Genotype.from_dict({**BINARY, "normal_concat": "2,3"})
    assert "\n" not in str(error.value)

"""How the tools present themselves, run as a user runs them (a fresh process each).

--help lists the tool's own flags and exits 0, with no TensorFlow C++ start-up lines on
stderr; bad output paths exit 2 with one line before any work and leave the folder as it was;
`--import` loads a model whose layers live in the user's own module; a DARTS `Genotype(...)`
file is a genotype; an offline TFDS name fails in seconds and leaves nothing behind; the demo
reads relative paths from the working folder and keeps a step's exit code.
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from conftest import randomize_batch_norm
from ubnas_tf import _startup
from ubnas_tf.errors import UserError
from ubnas_tf.io_utils import check_writable

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Each tool's own flags (beside --verbose, which every tool has).
OWN_FLAGS = {
    "search.py": ["--dataset", "--output_dir", "--config", "--set", "--strategy",
                  "--cpu_replicas", "--data_dir", "--manual_dir"],
    "train.py": ["--genotype", "--model", "--dataset", "--output_dir", "--config", "--set",
                 "--strategy", "--cpu_replicas"],
    "evaluate.py": ["--dataset", "--[no]top5", "--import", "--[no]allow_lambda", "--config"],
    "benchmark.py": ["--threads", "--runs", "--warmup", "--float_tflite", "--json"],
    "tune.py": ["--dataset", "--output_dir", "--config", "--set"],
    "demo.py": ["--output_dir", "--dataset", "--search_config", "--train_config", "--baselines"],
    "convert.py": ["-o, --output", "--report", "--[no]verify", "--target", "--io", "--import",
                   "--[no]allow_lambda", "--tolerance", "--min_agreement", "--dataset"],
    "make_demo_data.py": ["--source", "--output_dir", "--train_per_class", "--seed"],
    "derive.py": ["--search_dir", "--output_dir", "--method", "--epoch", "--batches",
                  "--tune_steps", "--data_dir", "--manual_dir"],
}


def user_env(**extra):
    """The environment of a user who set no TensorFlow log level."""
    environment = {key: value for key, value in os.environ.items()
                   if key != "TF_CPP_MIN_LOG_LEVEL"}
    environment.update(extra)
    return environment


def run_as_user(args, cwd=ROOT, timeout=600, **env):
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=user_env(**env))


def one_error_line(result) -> str:
    """The whole stderr, which must be exactly one `error:` line."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    return lines[0]


def tree(folder: pathlib.Path) -> dict:
    """Every path under `folder` with its bytes (None for folders): a before/after snapshot."""
    return {str(path.relative_to(folder)): (None if path.is_dir() else path.read_bytes())
            for path in sorted(folder.rglob("*"))}


# -- --help and start-up chatter --------------------------------------------------------------
@pytest.mark.parametrize("script", sorted(OWN_FLAGS))
def test_help_lists_the_tools_own_flags_exits_0_and_is_quiet(script):
    result = run_as_user([ROOT / "tools" / script, "--help"], cwd="/")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr == ""  # no oneDNN / CUDA stub / cuFFT factory / TF-TRT lines
    listed = result.stdout.split("\nflags:\n", 1)[1]
    for flag in OWN_FLAGS[script] + ["--[no]verbose"]:
        assert f"\n  {flag}:" in "\n" + listed or f"\n  {flag} " in "\n" + listed, flag
    assert "--flagfile" not in listed and "--logtostderr" not in listed  # absl's own


def test_lce_convert_script_help_and_refusal_are_quiet(tmp_path):
    script = pathlib.Path(sys.executable).parent / "lce_convert"
    if not script.exists():
        pytest.skip("the lce_convert console script is not installed beside this python")
    helped = run_as_user([script, "--help"], cwd=tmp_path)
    assert helped.returncode == 0 and helped.stderr == "", helped.stderr[-3000:]
    assert "--import" in helped.stdout and "--[no]verify" in helped.stdout
    refused = run_as_user([script, tmp_path / "absent.h5"], cwd=tmp_path)
    assert refused.returncode == 2
    assert "absent.h5 does not exist" in one_error_line(refused)


def test_quieting_only_in_tools_and_never_over_the_users_choice():
    tool = str(ROOT / "tools" / "search.py")
    environ = {}
    assert _startup.quiet_tensorflow_in_tools([tool, "--dataset", "demo"], environ)
    assert environ == {"TF_CPP_MIN_LOG_LEVEL": "3"}
    for argv, environ in (([tool, "--verbose"], {}),
                          ([tool, "--verbose=true"], {}),
                          ([tool], {"TF_CPP_MIN_LOG_LEVEL": "0"}),
                          (["/home/me/my_script.py"], {}),
                          (["/usr/bin/ipython"], {})):
        before = dict(environ)
        assert not _startup.quiet_tensorflow_in_tools(argv, environ)
        assert environ == before
    assert _startup.quiet_tensorflow_in_tools(["/opt/venv/bin/lce_convert", "m.h5"], {})
    assert _startup.quiet_tensorflow_in_tools([tool, "--", "--verbose"], {})


def test_verbose_lets_tensorflow_speak():
    quiet = run_as_user([ROOT / "tools" / "benchmark.py", "--help"])
    verbose = run_as_user([ROOT / "tools" / "benchmark.py", "--help", "--verbose"],
                          TF_CPP_MIN_LOG_LEVEL="0")
    assert quiet.returncode == verbose.returncode == 0
    assert quiet.stderr == ""
    # What TensorFlow prints at start-up depends on the host; on this project's x86 machines
    # at least oneDNN's notice and the CUDA stub's line.
    if not verbose.stderr:
        pytest.skip("this TensorFlow build prints nothing at start-up")
    assert "tensorflow" in verbose.stderr or "tsl" in verbose.stderr


def test_bad_flag_value_is_one_line_exit_2():
    result = run_as_user([ROOT / "tools" / "search.py", "--dataset", "demo", "--output_dir",
                          "/tmp/never_made_by_this_test", "--cpu_replicas", "-2"])
    assert result.returncode == 2
    assert "--cpu_replicas" in one_error_line(result) and "--help" in result.stderr
    assert not pathlib.Path("/tmp/never_made_by_this_test").exists()


# -- output paths (issue 18.5) ----------------------------------------------------------------
@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nobody can write to, root included: a read-only tmpfs mounted on it (root), or
    a folder without write permission (anyone else). Skips where neither can be made."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    mounted = False
    if os.geteuid() == 0 and shutil.which("mount"):
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs",
                                  str(folder)], capture_output=True).returncode == 0
    else:
        folder.chmod(0o555)
    try:
        try:
            check_writable(folder / "x", folder=False)
            pytest.skip("no read-only folder can be made here (root without mount rights)")
        except UserError:
            pass
        yield folder
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=False)
        else:
            folder.chmod(0o755)


def test_check_writable_refuses_files_paths_under_files_and_read_only_folders(
        tmp_path, read_only_dir):
    a_file = tmp_path / "a_file"
    a_file.write_text("mine")
    with pytest.raises(UserError, match="is a file, not a folder"):
        check_writable(a_file, folder=True, what="--output_dir")
    with pytest.raises(UserError, match=f"cannot be created: {a_file} is a file"):
        check_writable(a_file / "out" / "deeper", folder=True, what="--output_dir")
    with pytest.raises(UserError, match="is a folder: pass the path of a file"):
        check_writable(tmp_path, folder=False, what="--json")
    with pytest.raises(UserError, match="cannot be written .*Read-only|cannot be written"):
        check_writable(read_only_dir / "new" / "out", folder=True, what="--output_dir")
    check_writable(tmp_path / "new" / "deeper", folder=True)  # fine, and nothing is made
    check_writable(tmp_path / "report.json", folder=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "read_only"]


@pytest.mark.slow
def test_tools_refuse_unwritable_outputs_up_front(tmp_path, read_only_dir):
    a_file = tmp_path / "a_file"
    a_file.write_text("mine")
    model = tmp_path / "model.h5"
    model.write_text("not looked at: the output is checked first")
    before = tree(tmp_path)
    tools = ROOT / "tools"
    cases = [
        ([tools / "search.py", "--dataset", "demo", "--output_dir", a_file / "out"],
         "--output_dir"),
        ([tools / "train.py", "--model", "bireal", "--dataset", "demo", "--output_dir", a_file],
         "is a file"),
        ([tools / "tune.py", "--dataset", "demo", "--output_dir", read_only_dir / "t"],
         "cannot be written"),
        ([tools / "convert.py", model, "-o", read_only_dir / "m.tflite"], "cannot be written"),
        ([tools / "convert.py", model, "--report", a_file / "r.json"], "--report"),
        ([tools / "benchmark.py", tmp_path / "m.tflite", "--json", tmp_path], "is a folder"),
        ([tools / "demo.py", "--output_dir", a_file / "demo"], "--output_dir"),
        ([tools / "derive.py", "--search_dir", tmp_path, "--output_dir", a_file / "d"],
         "--output_dir"),
    ]
    # Each is refused for its output, before any work: the model is not a model and the
    # .tflite does not exist, so a tool that looked at its input first would say so instead.
    for args, expected in cases:
        result = run_as_user(args, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stderr[-3000:])
        assert expected in one_error_line(result), args
        assert "===" not in result.stdout  # the demo started no step
    assert tree(tmp_path) == before


# -- lce_convert: --import, and a failed verification writes nothing (18.6) --------------------
CUSTOM_LAYER = textwrap.dedent('''
    import tensorflow as tf

    @tf.keras.utils.register_keras_serializable(package="my_layers")
    class Doubling(tf.keras.layers.Layer):
        """Multiplies by 2: a layer Keras cannot rebuild without this module."""

        def call(self, inputs):
            return 2.0 * inputs
''')


@pytest.fixture(scope="module")
def custom_model(tmp_path_factory):
    import tensorflow as tf

    folder = tmp_path_factory.mktemp("custom")
    (folder / "my_layers.py").write_text(CUSTOM_LAYER)
    sys.path.insert(0, str(folder))
    try:
        import my_layers
    finally:
        sys.path.remove(str(folder))
    from ubnas_tf.search_space import get_space

    # A float stem, one binary module (LCE folds its BN into the accumulator: logits differ
    # from Keras's by ~1e-7 of their scale, which a tolerance of 1e-12 refuses), the user's
    # layer, and a classifier.
    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input((8, 8, 1))
    x = tf.keras.layers.Conv2D(32, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = tf.keras.layers.BatchNormalization(name="stem_bn")(x)
    x = get_space("binary").build_op("bin_conv_3x3", 32, 1, "ebnas_retrain", name="op")(x)
    x = my_layers.Doubling(name="double")(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(3)(x))
    randomize_batch_norm(model)
    model.save(folder / "model.h5")
    return folder


@pytest.mark.slow
def test_import_flag_loads_the_users_custom_layers(custom_model):
    model = custom_model / "model.h5"
    convert = ROOT / "tools" / "convert.py"
    refused = run_as_user([convert, model, "--nowrite_float"], cwd=custom_model)
    assert refused.returncode == 2
    line = one_error_line(refused)
    assert "Doubling" in line and "--import" in line
    missing = run_as_user([convert, model, "--import", "no_such_module_xyz"], cwd=custom_model)
    assert missing.returncode == 2
    assert "--import no_such_module_xyz failed (ModuleNotFoundError" in one_error_line(missing)
    assert not (custom_model / "model.tflite").exists()
    # By module name (found from the working folder), and by path from elsewhere.
    converted = run_as_user([convert, model, "--import", "my_layers", "--nowrite_float",
                             "--verify_samples", "4"], cwd=custom_model)
    assert converted.returncode == 0, converted.stderr[-3000:]
    assert "passed" in converted.stdout and (custom_model / "model.tflite").is_file()
    by_path = run_as_user([convert, model, "-o", custom_model / "by_path.tflite", "--import",
                           custom_model / "my_layers.py", "--no-verify", "--nowrite_float"],
                          cwd="/")
    assert by_path.returncode == 0, by_path.stderr[-3000:]
    assert (custom_model / "by_path.tflite").is_file()


@pytest.mark.slow
def test_failed_verification_names_the_fixes_and_keeps_the_earlier_report(custom_model):
    model = custom_model / "model.h5"
    (custom_model / "kept.tflite").write_bytes(b"an earlier conversion")
    report = custom_model / "kept.json"
    report.write_text('{"earlier": "report"}\n')
    before = tree(custom_model)
    result = run_as_user([ROOT / "tools" / "convert.py", model, "-o", custom_model / "kept.tflite",
                          "--report", report, "--import", "my_layers", "--tolerance", "1e-12",
                          "--min_agreement", "1", "--verify_samples", "4"], cwd=custom_model)
    assert result.returncode == 1
    line = one_error_line(result)
    assert "disagrees" in line and "nothing written" in line
    for fix in ("--dataset", "--tolerance", "--min_agreement", "--no-verify", "BiRealNet"):
        assert fix in line, fix
    assert tree(custom_model) == before


# -- genotypes (18.11) ------------------------------------------------------------------------
def test_darts_genotype_file_is_read_and_bad_ones_are_user_errors(tmp_path):
    from ubnas_tf.search_space.genotype import Genotype, published

    darts_v2 = published("DARTS_V2")
    text = ("DARTS_V2 = Genotype(normal=" + repr(list(darts_v2.normal)) + ", normal_concat="
            "range(2, 6), reduce=" + repr(list(darts_v2.reduce)) + ", reduce_concat=[2, 3, 4, 5])")
    path = tmp_path / "darts_v2.txt"
    path.write_text(text + "\n")
    assert Genotype.load(path) == darts_v2  # the space inferred: every op is a DARTS op
    for bad, message in (
        ("Genotype(normal=OPS, normal_concat=[2], reduce=[], reduce_concat=[2])",
         "field 'normal' is not a literal"),
        ("Genotype(normal=[], normal_concat=range(n), reduce=[], reduce_concat=[2])",
         "field 'normal_concat' is not a literal"),
        ("Genotype(**fields)", "each field once, by name"),
        ("Genotype(normal=[('sep_conv_3x3', 0)", "not a DARTS Genotype"),
        ("import os; Genotype()", "not a DARTS Genotype"),
    ):
        path.write_text(bad)
        with pytest.raises(UserError, match=message):
            Genotype.load(path)


# -- TFDS offline (18.7) ----------------------------------------------------------------------
# No network, whatever this machine has: every request goes through a proxy that refuses.
DEAD_PROXY = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
              "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9",
              "NO_PROXY": "", "no_proxy": ""}


@pytest.mark.slow
def test_unprepared_tfds_dataset_without_network_fails_fast_and_leaves_nothing(tmp_path):
    data_dir = tmp_path / "tfds"
    result = run_as_user([ROOT / "tools" / "search.py", "--dataset", "cifar10", "--data_dir",
                          data_dir, "--output_dir", tmp_path / "out"], cwd=tmp_path,
                         **DEAD_PROXY)
    assert result.returncode == 2
    line = one_error_line(result)  # no progress bars, no urllib3 retry warnings
    assert "cifar10 is not prepared" in line and "cannot be downloaded" in line
    assert "tfds build cifar10 --data_dir" in line and "--data_dir DIR" in line
    assert "data_dir=" not in line
    assert sorted(tmp_path.iterdir()) == []


def test_offline_check_takes_seconds_not_tfds_retries(tmp_path, monkeypatch):
    # In this process (TensorFlow already loaded), so the time is the check's alone: TFDS's
    # own download retried for 208 s before failing (issue 18.7).
    from ubnas_tf.data import tfds_source

    for key, value in DEAD_PROXY.items():
        monkeypatch.setenv(key, value)
    started = time.monotonic()
    with pytest.raises(UserError, match="cannot be downloaded"):
        tfds_source.open_tfds("cifar10", data_dir=str(tmp_path / "tfds"), manual_dir=None,
                              max_examples=None)
    # Building the builder and one refused connection; tfds.builder alone, looking for the
    # dataset's info on GCS through the dead proxy, took ~200 s before it was kept off GCS.
    assert time.monotonic() - started < 30
    assert sorted(tmp_path.iterdir()) == []


def test_failed_preparation_removes_what_it_created(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    from ubnas_tf.data import tfds_source

    builder = tfds.builder("cifar10", data_dir=str(tmp_path / "tfds"))
    (tmp_path / "tfds" / "downloads").mkdir(parents=True)
    (tmp_path / "tfds" / "downloads" / "kept.tar.gz").write_text("an earlier download")

    def half_download(**_):
        (tmp_path / "tfds" / "cifar10" / "3.0.2.incomplete").mkdir(parents=True)
        (tmp_path / "tfds" / "downloads" / "cifar-10.tmp.123").mkdir()
        raise ConnectionError("connection reset")

    monkeypatch.setattr(tfds_source, "_unreachable", lambda builder: None)
    monkeypatch.setattr(builder, "download_and_prepare", half_download)
    with pytest.raises(UserError, match="could not be downloaded .*--data_dir DIR"):
        tfds_source._prepare(builder, "cifar10", None)
    assert tree(tmp_path) == {"tfds": None, "tfds/downloads": None,
                              "tfds/downloads/kept.tar.gz": b"an earlier download"}


# -- the demo's paths and exit codes (18.8) ---------------------------------------------------
@pytest.mark.slow
def test_demo_reads_paths_from_the_working_folder_and_checks_configs_first(tmp_path):
    (tmp_path / "train_bad.yaml").write_text("epochs: [\n")
    bad_train = run_as_user([ROOT / "tools" / "demo.py", "--train_config", "train_bad.yaml",
                             "--output_dir", "my_demo"], cwd=tmp_path)
    assert bad_train.returncode == 2
    assert "train_bad.yaml is not valid YAML" in one_error_line(bad_train)
    assert "===" not in bad_train.stdout  # before the search, not after it
    # A step's bad input keeps its exit code 2; relative folders land in the working folder.
    bad_data = run_as_user([ROOT / "tools" / "demo.py", "--dataset", "folder:no_such_folder",
                            "--output_dir", "my_demo"], cwd=tmp_path)
    assert bad_data.returncode == 2, bad_data.stderr[-3000:]
    assert "no_such_folder" in one_error_line(bad_data)
    assert f"--output_dir my_demo/search" in bad_data.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train_bad.yaml"]
    assert not (ROOT / "my_demo").exists()


# -- tune's budget (18.9) ---------------------------------------------------------------------
def test_tune_demo_preset_resolves_from_any_folder_and_budget_keys_say_where(
        tmp_path, monkeypatch):
    from ubnas_tf import config as config_lib
    from ubnas_tf.tune.space import TuningSpace, load_config

    monkeypatch.chdir(tmp_path)  # the preset names its neighbours, found beside it
    config = load_config([config_lib.CONFIG_DIR / "tune_demo.yaml"])
    search_demo = config_lib.load("search", [config_lib.CONFIG_DIR / "search_demo.yaml"])
    assert config["search"]["cells"] == search_demo["cells"] == 5
    assert config["search"]["epochs"] == 4 and config["train"]["epochs"] == 2
    assert config["train"]["cells"] == 5  # train_demo.yaml's network
    warmups = next(t for t in TuningSpace(config).tuned if t.name == "search.warmup")
    # Shares of the epochs: every trial keeps at least one epoch of architecture steps.
    assert max(warmups.values) * config["search"]["epochs"] <= config["search"]["epochs"] - 1
    with pytest.raises(UserError, match=r"'epochs' belongs to a trial's search and train "
                                        r"config.*search\.epochs=VALUE and/or train\.epochs"):
        load_config([], ["epochs=1"])


# -- wording (18.13) --------------------------------------------------------------------------
def test_messages_say_what_is_true(tmp_path):
    from ubnas_tf import config as config_lib
    from ubnas_tf.data import load_dataset

    with pytest.raises(UserError, match=f"config file {tmp_path} is a folder: pass a YAML file"):
        config_lib.load("search", [tmp_path])
    assert config_lib.describe_differences(["seed"]) == "seed differs"
    assert config_lib.describe_differences(["seed", "epochs"]) == "seed, epochs differ"
    assert config_lib.describe_differences(list("abcdefgh")) == "a, b, c, d, e, f ... differ"
    one = load_dataset("demo", max_examples=1)
    with pytest.raises(UserError, match="use at least 2 training examples") as error:
        one.search_split_sizes(0.5)
    assert "nearer 0.5" not in str(error.value)
    with pytest.raises(UserError, match="use a portion nearer 0.5"):
        load_dataset("demo", max_examples=10).search_split_sizes(0.05)


def test_demo_steps_keep_the_exit_code_and_run_in_the_working_folder(tmp_path, monkeypatch,
                                                                    capsys):
    from ubnas_tf import pipeline

    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "bad_input.py").write_text(
        "import os, pathlib, sys\npathlib.Path('ran_in').write_text(os.getcwd())\n"
        "print('error: fix X', file=sys.stderr)\nsys.exit(2)\n")
    (tools / "broken.py").write_text("raise SystemExit(1)\n")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setattr(pipeline, "TOOLS", tools)
    monkeypatch.chdir(work)
    steps = pipeline.Runner(2)
    with pytest.raises(SystemExit) as bad:
        steps("bad input", ["bad_input.py"])
    assert bad.value.code == 2 and (work / "ran_in").read_text() == str(work)
    assert "step" not in capsys.readouterr().err  # the tool's own line is the only one
    with pytest.raises(SystemExit) as broken:
        steps("broken", ["broken.py"])
    assert broken.value.code == 1
    assert "error: step 'broken' failed with exit code 1" in capsys.readouterr().err

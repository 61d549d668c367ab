"""Config loading: file:arg specs, typed overrides, clear errors, locking."""

import textwrap

import pytest

from rs_jax.config_files import ConfigError, load_config, parse_value, split_spec

DEMO = "configs/demo.py"


def test_demo_loads_with_arg_and_overrides():
    config = load_config(
        f"{DEMO}:baseline",
        [
            "train.steps=10",
            "train.learning_rate=3e-4",
            "model.baseline=false",
            "data.tasks=scene,count",
            "data.tokenizer=vocab.txt",
            "mesh.data=-1",
        ],
    )
    assert config.train.steps == 10 and isinstance(config.train.steps, int)
    assert config.train.learning_rate == pytest.approx(3e-4)
    assert config.model.baseline is False
    assert config.data.tasks == ("scene", "count")
    assert config.data.tokenizer == "vocab.txt"
    assert config.mesh.data == -1


def test_no_arg_passes_none_and_baseline_arg_applies():
    assert load_config(DEMO).model.baseline is False
    assert load_config(f"{DEMO}:baseline").model.baseline is True


def test_config_is_locked():
    config = load_config(DEMO)
    with pytest.raises(AttributeError):
        config.train.stpes = 3


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.stpes=10", "Unknown config key 'train.stpes'; did you mean 'train.steps'?"),
        ("train.steps=abc", "config.train.steps expects int, got 'abc'"),
        ("train.learning_rate=fast", "config.train.learning_rate expects float, got 'fast'"),
        ("model.baseline=maybe", "config.model.baseline expects bool"),
        ("train=3", "config.train is a group"),
        ("train.steps.x=1", "config.train.steps is a value, not a group"),
        ("train.steps", "is not of the form key.path=value"),
        ("nosuch.key=1", "Unknown config key 'nosuch.key'"),
    ],
)
def test_override_errors_name_the_key(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(DEMO, [override])
    assert message in str(info.value)


@pytest.mark.parametrize(
    "raw, old, expected",
    [
        ("true", False, True),
        ("0", True, False),
        ("1_000", 5, 1000),
        ("2", 1.5, 2.0),
        ("(a, b)", ("x",), ("a", "b")),
        ("[a,b]", ("x",), ("a", "b")),
        ("a", ("x", "y"), ("a",)),
        ("1,2", (3,), (1, 2)),
        (
            '(("batch", "data"), ("embed", None))',
            (("a", "b"),),
            (("batch", "data"), ("embed", None)),
        ),
        ("", (), ()),
        ("7", None, 7),
        ("hello", None, "hello"),
    ],
)
def test_parse_value_uses_existing_type(raw, old, expected):
    assert parse_value(raw, old) == expected


def test_spec_split():
    assert split_spec("configs/demo.py:baseline") == (split_spec("configs/demo.py")[0], "baseline")
    assert split_spec("configs/demo.py")[1] is None


def test_missing_file_and_failing_get_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.py"):
        load_config(str(tmp_path / "nope.py"))
    with pytest.raises(ConfigError, match=r"get_config\('bogus'\).*Unknown config variant"):
        load_config(f"{DEMO}:bogus")
    broken = tmp_path / "broken.py"
    broken.write_text("import not_a_module_anywhere\n")
    with pytest.raises(ConfigError, match="Importing config file .*broken.py.*failed"):
        load_config(str(broken))


def test_config_outside_repo_can_import_configs_common(tmp_path):
    # A user's experiment file elsewhere still finds the shared defaults.
    user = tmp_path / "exp.py"
    user.write_text(
        textwrap.dedent(
            """
            from configs import common

            def get_config(arg=None):
                config = common.base_config()
                config.train.steps = int(arg or 7)
                return config
            """
        )
    )
    assert load_config(f"{user}:3").train.steps == 3
    assert load_config(str(user)).train.steps == 7


def test_validation_rejects_nonsense():
    with pytest.raises(ConfigError, match="config.train.steps must be positive"):
        load_config(DEMO, ["train.steps=0"])
    with pytest.raises(ConfigError, match="config.data.batch_size must be positive"):
        load_config(DEMO, ["data.batch_size=-4"])


@pytest.mark.parametrize(
    "override, message",
    [
        # 0 kept checkpoints would let rotation delete every checkpoint of the workdir.
        ("train.keep_checkpoints=0", "config.train.keep_checkpoints must be positive"),
        ("eval.batch_size=0", "config.eval.batch_size must be positive"),
        ("eval.max_new_tokens=0", "config.eval.max_new_tokens must be positive"),
        ("eval.num_examples=0", "config.eval.num_examples must be positive, or -1 for all"),
        ("eval.num_examples=-5", "config.eval.num_examples must be positive, or -1 for all"),
        ("eval.cues=shuffled", "config.eval.cues must be 'retrieved' or 'random'"),
        ("train.objective=contrast", "config.train.objective must be 'answer' or 'align'"),
    ],
)
def test_values_out_of_range_name_their_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(DEMO, [override])
    assert load_config(DEMO, ["eval.num_examples=-1"]).eval.num_examples == -1


def test_every_config_files_arg_is_typed_key_value_pairs():
    from configs.common import parse_arg

    parsed = parse_arg(" e=4, dropless ,cap=0.5,name=x", e=8, cap=1.25, dropless=False, name="")
    assert parsed.to_dict() == {"e": 4, "cap": 0.5, "dropless": True, "name": "x"}
    assert parse_arg(None, flag=False).flag is False
    assert parse_arg("flag=false", flag=False).flag is False
    with pytest.raises(
        ValueError, match=r"Unknown config variant\(s\) \['k'\]; allowed: flag, e=<int>"
    ):
        parse_arg("k=2", flag=False, e=8)
    with pytest.raises(ConfigError, match="config variant e expects int, got 'four'"):
        parse_arg("e=four", e=8)
    with pytest.raises(ValueError, match=r"config variant e needs a value: e=<int>"):
        parse_arg("e", e=8)
    with pytest.raises(ValueError, match="allowed: none"):
        parse_arg("anything")


def test_grounding_synth_fits_its_longest_questions_and_boxes(tmp_path):
    from rs_jax.data import boxes, tasks, tokenizer
    from rs_jax.data.text import TextEncoder

    config = load_config("configs/grounding_synth.py")
    dc = config.data
    assert tuple(config.data.tasks) == ("grounding", "region_caption")
    corpus = tasks.corpus_texts() + tasks.grounding_corpus(config.data.box_format, dc.tasks)
    tok = tokenizer.load_tokenizer(tokenizer.train_tokenizer(corpus, str(tmp_path / "tok")))
    encoder = TextEncoder(tok, dc.template, dc.max_prompt_len, dc.max_answer_len)
    for text in tasks.grounding_corpus(dc.box_format, dc.tasks):  # every form; raises if long
        encoder.prompt(text)
    widest = boxes.render([boxes.Box(0.1, 0.1, 1.0, 1.0)], dc.box_format)  # three-digit 100
    _, mask = encoder.answer(widest)
    assert mask.sum() <= config.eval.max_new_tokens  # generation can write it whole


def _non_embedding_parameters(config) -> int:
    """Parameters of the model `config` builds, but the token embeddings (the same in every
    variant of a config)."""
    import jax
    import numpy as np

    from rs_jax.data.scenes import kb_entries
    from rs_jax.train import experiment

    config.unlock()
    config.model.llm.vocab_size = 256  # a planned model has no tokenizer
    exp = experiment.plan(config, kb_entries(), devices=jax.devices()[:1])
    leaves = jax.tree_util.tree_leaves_with_path(exp.state["params"])
    return sum(
        int(np.prod(x.shape)) for path, x in leaves if "embedding" not in jax.tree_util.keystr(path)
    )


@pytest.mark.parametrize("config_file", ["configs/eurosat.py", "configs/ucm_mixture.py"])
def test_the_ablation_rungs_switch_one_part_each_and_wide_matches_the_full_size(config_file):
    from rs_jax.models.config import ModelConfig

    def model(arg=None):
        config = load_config(config_file + (f":{arg}" if arg else ""))
        return ModelConfig.from_config(config.model, config.data.image_size)

    full = model()
    assert (full.variant, full.visual_tokens) == ("full", 1 + 4 + 16)
    assert (model("baseline").variant, model("wide").variant) == ("baseline", "baseline")
    assert (model("levels").variant, model("levels").levels) == ("levels", full.levels)
    for arg, variant in (("retrieval", "levels + augmentation"), ("experts", "levels + experts")):
        alone = model(arg)
        assert alone.variant == variant
        # One level: every patch token of the last block, as the baseline sees them.
        assert [(lv.block, lv.grid) for lv in alone.levels] == [(3, 8)]
        assert alone.visual_tokens == model("baseline").visual_tokens == 64
    specs = {"baseline": ":baseline", "wide": ":wide", "full": ""}
    sizes = {k: _non_embedding_parameters(load_config(config_file + s)) for k, s in specs.items()}
    assert sizes["baseline"] < 0.6 * sizes["full"]
    assert sizes["wide"] == pytest.approx(sizes["full"], rel=0.02)
    with pytest.raises(ValueError, match="choose at most one of the variants levels, experts"):
        load_config(f"{config_file}:levels,experts")


def test_alignment_takes_whole_batches():
    with pytest.raises(ConfigError, match="set config.train.grad_accum_steps=1"):
        load_config(DEMO, ["train.objective=align", "train.grad_accum_steps=2"])

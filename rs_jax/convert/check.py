"""`rs-jax convert check --hf DIR`: a folder loaded by both rs-jax and transformers, run on
the same random inputs, and the largest output difference printed: the sanity check of a
conversion. Needs torch (the `test` extra)."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rs_jax import sharding
from rs_jax.convert import hf_decoder, hf_vision
from rs_jax.convert.weights import load_hf_config

# In fp32 the two implementations agree to rounding; more than this is a conversion bug.
TOLERANCE = 1e-4


def _on_one_device() -> tuple[jax.sharding.Mesh, sharding.Rules]:
    mesh = sharding.make_mesh({axis: 1 for axis in sharding.MESH_AXES}, jax.devices()[:1])
    return mesh, sharding.SHARDING_RULES


def _import_torch():
    try:
        import torch
    except ImportError as e:
        raise ValueError(
            "rs-jax convert check runs the transformers model and needs torch: "
            "pip install torch (or the project's test extra)"
        ) from e
    return torch


def check_decoder(folder: Path, seed: int = 0) -> float:
    """Largest |logit difference| on a random left-padded batch."""
    torch = _import_torch()
    import transformers

    decoder = hf_decoder.load_decoder(folder, *_on_one_device())
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(folder), dtype=torch.float32, attn_implementation="eager"
    ).eval()
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, decoder.cfg.vocab_size, (2, 16))
    mask = np.ones_like(ids)
    mask[1, :5] = 0
    hidden, _, _ = decoder(decoder.embed(jnp.asarray(ids)), jnp.asarray(mask, bool))
    ours = np.asarray(decoder.logits(hidden))
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    with torch.no_grad():
        theirs = model(
            input_ids=torch.from_numpy(ids),
            attention_mask=torch.from_numpy(mask),
            position_ids=torch.from_numpy(positions),
        ).logits.numpy()
    real = mask.astype(bool)
    return float(np.abs(ours[real] - theirs[real]).max())


def check_vision(folder: Path, seed: int = 0) -> float:
    """Largest |hidden-state difference| over every block, on random images."""
    torch = _import_torch()
    import transformers

    encoder = hf_vision.load_vision_tower(folder, *_on_one_device())
    cfg = encoder.cfg
    model = transformers.AutoModel.from_pretrained(str(folder), dtype=torch.float32).eval()
    model = getattr(model, "vision_model", model)
    pixels = np.random.default_rng(seed).uniform(-1, 1, (2, cfg.image_size, cfg.image_size, 3))
    normalised = ((pixels + 1) / 2 - np.asarray(cfg.pixel_mean)) / np.asarray(cfg.pixel_std)
    values = torch.from_numpy(normalised.transpose(0, 3, 1, 2).astype(np.float32))
    with torch.no_grad():
        out = model(pixel_values=values, output_hidden_states=True)
    taps = tuple(range(cfg.depth))
    ours = encoder(jnp.asarray(pixels, jnp.float32), taps)
    skip = int(cfg.class_token)
    worst = 0.0
    for tap in taps:
        last = tap == cfg.depth - 1 and cfg.final_norm
        theirs = (out.last_hidden_state if last else out.hidden_states[tap + 1])[:, skip:]
        worst = max(worst, float(np.abs(np.asarray(ours[tap]) - theirs.numpy()).max()))
    return worst


def run(folder: str | Path) -> int:
    """Prints one line per part found in `folder`; exit code 1 if any exceeds TOLERANCE."""
    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{folder}: no config.json (expected a Hugging Face model folder)")
    config = load_hf_config(folder)
    vision = getattr(config, "vision_config", None) or config
    text = getattr(config, "text_config", None) or config
    parts = []
    if vision.model_type in hf_vision.TOWERS:
        parts.append(("vision tower hidden states", check_vision))
    if text.model_type in hf_decoder.MODEL_TYPES and config.model_type != "llava":
        parts.append(("decoder logits", check_decoder))
    if not parts:
        supported = (*hf_vision.TOWERS, *hf_decoder.MODEL_TYPES)
        raise ValueError(
            f"{folder / 'config.json'}: model_type={config.model_type!r}: convert check "
            f"compares {', '.join(supported)} folders (a LLaVA folder's parts: not yet)"
        )
    failed = False
    for label, check in parts:
        difference = check(folder)
        # NaN compares false both ways: only a difference known to be small passes.
        passed = difference <= TOLERANCE
        verdict = "ok" if passed else "MISMATCH" if np.isfinite(difference) else "NOT FINITE"
        failed |= not passed
        print(f"{folder}: {label}: max |rs-jax - transformers| = {difference:.2e} ({verdict})")
    return int(failed)

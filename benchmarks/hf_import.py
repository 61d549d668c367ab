"""Loading a ~1B-parameter LLaMA checkpoint onto 8 simulated CPU devices with fsdp: peak
host memory (RSS) and time, against transformers' own `from_pretrained` in PyTorch.

  python benchmarks/hf_import.py --out benchmarks/results/hf_import.json [--layers 22]

A random LLaMA in TinyLlama-1.1B's shape (width 2048, MLP 5632, 32 heads / 4 KV heads,
vocab 32,000, untied head) is written as fp32 safetensors in 2 GiB shards with
`model.safetensors.index.json` (random values from numpy, no download). Each loader then
runs in a fresh process that reports its peak RSS (`ru_maxrss`, file-backed pages of
memory-mapped checkpoints included) and its RSS after imports, before loading; the
transformers side then touches every weight (it may map them lazily), as a first forward
pass would. On CPU the devices' memory is host memory, so the loaded model itself counts
once: the target is a peak of at most 1.5x the checkpoint's size.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

GIB = 1024**3
SHAPE = dict(
    hidden_size=2048,
    intermediate_size=5632,
    num_attention_heads=32,
    num_key_value_heads=4,
    vocab_size=32_000,
    rms_norm_eps=1e-5,
    tie_word_embeddings=False,
)


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def write_checkpoint(folder: Path, layers: int, shard_bytes: int = 2 * GIB) -> int:
    """A random LLaMA folder; returns the bytes of its tensors."""
    import numpy as np
    import torch
    from safetensors.numpy import save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(num_hidden_layers=layers, **SHAPE)
    with torch.device("meta"):  # names and shapes only
        shapes = {k: tuple(v.shape) for k, v in LlamaForCausalLM(config).state_dict().items()}
    config.save_pretrained(folder)
    rng = np.random.default_rng(0)
    weight_map, shard, size, total, index = {}, {}, 0, 0, 0

    def flush():
        nonlocal shard, size, index
        index += 1
        name = f"model-{index:05d}.safetensors"
        save_file(shard, folder / name, metadata={"format": "pt"})
        weight_map.update({k: name for k in shard})
        shard, size = {}, 0

    for name, shape in shapes.items():
        tensor = (0.02 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)
        if name.endswith("norm.weight"):
            tensor = np.ones(shape, np.float32)
        shard[name] = tensor
        size += tensor.nbytes
        total += tensor.nbytes
        if size >= shard_bytes:
            flush()
    if shard:
        flush()
    index_file = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index_file))
    return total


def load_rs_jax(folder: str) -> dict:
    import jax

    from rs_jax import sharding
    from rs_jax.convert import hf_decoder

    before = rss_bytes()
    start = time.perf_counter()
    mesh = sharding.make_mesh({"data": 1, "fsdp": 8, "expert": 1, "tensor": 1})
    decoder = hf_decoder.load_decoder(folder, mesh, sharding.SHARDING_RULES)
    jax.block_until_ready(jax.tree.leaves(decoder))
    seconds = time.perf_counter() - start
    kernel = decoder.groups.blocks.blocks[0].mlp.up.kernel.get_value()
    return {
        "seconds": seconds,
        "rss_before_bytes": before,
        "peak_rss_bytes": peak_rss_bytes(),
        "devices": jax.device_count(),
        "mlp_kernel_sharding": str(kernel.sharding.spec),
    }


def load_transformers(folder: str) -> dict:
    import torch
    from transformers import LlamaForCausalLM

    torch.set_num_threads(os.cpu_count() or 1)
    before = rss_bytes()
    start = time.perf_counter()
    model = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32)
    # Weights may still be pages of the memory-mapped files: touch every one, as the first
    # forward pass would, so that both loaders end with the whole model in memory.
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.sum()
    return {
        "seconds": time.perf_counter() - start,
        "rss_before_bytes": before,
        "peak_rss_bytes": peak_rss_bytes(),
    }


LOADERS = {"rs-jax (8 CPU devices, fsdp 8)": "rs_jax", "transformers from_pretrained": "torch"}


def run_loader(kind: str, folder: Path) -> dict:
    env = dict(os.environ)
    if kind == "rs_jax":
        from rs_jax.cli import simulate_cpu_devices

        simulate_cpu_devices(8, env)
    command = [sys.executable, __file__, "--worker", kind, "--folder", str(folder)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{kind} loader failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(common.RESULTS / "hf_import.json"))
    parser.add_argument("--layers", type=int, default=22)
    parser.add_argument("--worker", choices=sorted(set(LOADERS.values())))
    parser.add_argument("--folder")
    args = parser.parse_args()
    if args.worker:
        load = load_rs_jax if args.worker == "rs_jax" else load_transformers
        print(json.dumps(load(args.folder)))
        return

    folder = Path(tempfile.mkdtemp(prefix="rs_jax_hf_import_"))
    try:
        start = time.perf_counter()
        checkpoint_bytes = write_checkpoint(folder, args.layers)
        print(f"wrote {checkpoint_bytes / GIB:.2f} GiB in {time.perf_counter() - start:.0f} s")
        results = {}
        for label, kind in LOADERS.items():
            results[label] = run_loader(kind, folder)
            peak = results[label]["peak_rss_bytes"]
            results[label]["peak_over_checkpoint"] = peak / checkpoint_bytes
            print(f"{label}: {results[label]['seconds']:.1f} s, peak {peak / GIB:.2f} GiB")
    finally:
        shutil.rmtree(folder)

    parameters = checkpoint_bytes // 4
    rows = [
        [
            label,
            f"{r['seconds']:.1f}",
            f"{r['rss_before_bytes'] / GIB:.2f}",
            f"{r['peak_rss_bytes'] / GIB:.2f}",
            f"{r['peak_over_checkpoint']:.2f}x",
        ]
        for label, r in results.items()
    ]
    summary = [
        "### Loading a Hugging Face checkpoint (`benchmarks/hf_import.py`)",
        "",
        f"Random LLaMA, {parameters / 1e9:.2f}B parameters, {args.layers} layers, fp32 "
        f"safetensors in shards: {checkpoint_bytes / GIB:.2f} GiB. Target: peak RSS at most "
        "1.5x the checkpoint.",
        "",
        *common.table(
            ["loader", "seconds", "RSS after imports (GiB)", "peak RSS (GiB)", "peak / checkpoint"],
            rows,
        ),
    ]
    result = {
        "checkpoint_bytes": checkpoint_bytes,
        "parameters": parameters,
        "layers": args.layers,
        "loaders": results,
    }
    common.write(result, args.out, summary)


if __name__ == "__main__":
    main()

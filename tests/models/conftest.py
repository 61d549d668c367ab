import numpy as np

from configs import tiny

# 3 levels: scene (4 entries), landcover (3), object (5).
KB_LEVELS = np.array([0] * 4 + [1] * 3 + [2] * 5)
VOCAB = 64


def tiny_config(baseline: bool = False):
    return tiny.get_config("baseline" if baseline else None)


def random_batch(batch_size: int = 8, image_size: int = 16, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    prompt_mask = np.ones((batch_size, 6), np.int32)
    prompt_mask[::2, :2] = 0  # some prompts left-padded
    answer_mask = np.ones((batch_size, 4), np.int32)
    answer_mask[1::2, 3:] = 0  # some answers right-padded
    return {
        "image": rng.integers(0, 256, (batch_size, image_size, image_size, 3), np.uint8),
        "prompt_ids": rng.integers(5, VOCAB, (batch_size, 6)).astype(np.int32) * prompt_mask,
        "prompt_mask": prompt_mask,
        "answer_ids": rng.integers(5, VOCAB, (batch_size, 4)).astype(np.int32) * answer_mask,
        "answer_mask": answer_mask,
        "valid": np.ones((batch_size,), np.int32),
        "kb_labels": np.stack(
            [
                np.stack([rng.integers(0, 4, batch_size), -np.ones(batch_size, int)], -1),
                np.stack([rng.integers(4, 7, batch_size), -np.ones(batch_size, int)], -1),
                rng.integers(7, 12, (batch_size, 2)),
            ],
            axis=1,
        ).astype(np.int32),
    }

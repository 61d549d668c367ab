"""Zero-shot classification on hand-made embeddings: cosine, not dot product; each class
scored with the query of its own level."""

import numpy as np

from rs_jax.eval.zero_shot import _score, zero_shot_predictions


def test_the_nearest_class_by_angle_wins_whatever_the_lengths():
    classes = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    # Image 0 points at class 1 but is short; image 1 is long and nearer class 0 by angle.
    queries = np.array([[0.01, 0.2], [9.0, 4.0]])
    per_class = np.repeat(queries[:, None], 3, axis=1)
    assert zero_shot_predictions(per_class, classes).tolist() == [1, 0]
    # A dot product would pick class 0 for image 0 once the class vectors differ in length.
    assert np.argmax(queries @ (classes * [[30], [1], [1]]).T, axis=-1).tolist() == [0, 0]
    assert zero_shot_predictions(per_class, classes * [[30], [1], [1]]).tolist() == [1, 0]


def test_each_class_is_scored_with_the_query_of_its_level():
    # KB rows 0, 1 are scene entries, row 2 a land-cover entry; 2-d embeddings.
    table = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # Per image, its scene query and its land-cover query [N, L=2, D].
    queries = np.array(
        [
            [[1.0, 0.1], [-1.0, 0.0]],  # scene query near row 0, land cover far from row 2
            [[0.0, 1.0], [1.0, 0.2]],  # scene query on row 1, land cover off row 2
            [[-1.0, 0.5], [1.0, 0.9]],  # scene query nearer row 1, land cover near row 2
            [[0.2, 1.0], [0.0, 0.0]],  # no label anywhere: not counted
        ]
    )
    labels = np.full((4, 2, 3), -1)
    labels[0, 0, 0] = 0  # image 0: scene row 0
    labels[1, 0, 0] = 1  # image 1: scene row 1
    labels[2, 1, 0] = 2  # image 2: land-cover row 2
    result = _score(queries, labels, table)
    assert result == {"accuracy": 1.0, "count": 3, "classes": 3}
    # Image 2 said to be scene row 0: its scene query is nearer row 1, so it is now wrong.
    labels[2, 1, 0], labels[2, 0, 0] = -1, 0
    assert _score(queries, labels, table) == {"accuracy": 2 / 3, "count": 3, "classes": 2}

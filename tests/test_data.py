"""What a network input is: uint8 images on the training intensity scale."""

import numpy as np
import pytest

from model.data import INTENSITY_SCALE, to_input


def test_to_input_uses_the_training_scale():
    images = np.full((2, 28, 28), 128, dtype=np.uint8)
    tensor = to_input(images)
    assert tensor.shape == (2, 1, 28, 28)
    assert tensor[0, 0, 0, 0].item() == 128 / INTENSITY_SCALE
    with pytest.raises(TypeError):
        to_input(images.astype(np.float32))
